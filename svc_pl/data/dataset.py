"""Training examples from a preprocessed dataset (svc_pl's own layout, or a so-vits-svc 4.1 one),
the named :class:`Batch`, its collate function and a DDP-aware length-bucketing sampler."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from svc_pl.data.layout import DatasetInfo, load_bundle, read_filelist
from svc_pl.data.f0_track import hold_unvoiced
from svc_pl.data.spectral import LinearSpectrogram
from svc_pl.errors import UserFacingError

LOG = logging.getLogger(__name__)


class Batch(NamedTuple):
    """A padded training batch, longest item first.

    units (B, D, T); f0, voiced, volume (B, T); spec (B, F, T); audio (B, 1, T * hop);
    speaker (B,) long; lengths (B,) valid frames; names: the feature files.
    """

    units: torch.Tensor
    f0: torch.Tensor
    voiced: torch.Tensor
    spec: torch.Tensor
    audio: torch.Tensor
    speaker: torch.Tensor
    lengths: torch.Tensor
    volume: torch.Tensor
    names: list[str]


class FeatureDataset(Dataset):
    """One item per clip: features cropped to at most ``max_frames`` frames.

    Training items take their units from one of the clip's speaker-perturbed copies when the bundle has them
    (``units_perturbed``, drawn per step) unless ``perturbed_units`` is False; validation uses the clean units.

    Items are addressed by ``index`` or ``(index, epoch)`` (what :class:`BucketSampler` yields), and
    random choices (crop start, volume augmentation) come from a generator seeded by
    (seed, epoch, index): the same epoch gives the same data in any worker or process, which makes
    resumed runs repeat uninterrupted ones.
    """

    def __init__(self, dataset_dir: str | Path, split: str = "train", max_frames: int | None = 790, seed: int = 1234,
                 vol_aug: bool = False, train: bool = True, perturbed_units: bool = True, unvoiced_f0_hold: float = 0.0):
        self.root = Path(dataset_dir)
        self.info = DatasetInfo.load(self.root)
        self.items = read_filelist(self.root / f"{split}.txt")
        if not self.items:
            raise UserFacingError(f"{self.root / (split + '.txt')} lists no clips")
        self.max_frames = max_frames
        self.seed = seed
        self.vol_aug = vol_aug
        self.train = train
        self.perturbed_units = perturbed_units
        self.unvoiced_f0_hold = unvoiced_f0_hold
        self.spectrogram = LinearSpectrogram(self.info.filter_length, self.info.hop_length, self.info.win_length)
        self._lengths: list[int] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def frame_lengths(self) -> list[int]:
        """Frames per clip (read from the file sizes' bundle headers once), for bucketing."""
        if self._lengths is None:
            lengths = self.info.extra.get("frames")
            if isinstance(lengths, dict):
                self._lengths = [int(lengths.get(i, 0)) or self._read_frames(i) for i in self.items]
            else:
                self._lengths = [self._read_frames(i) for i in self.items]
        return self._lengths

    def _read_frames(self, item: str) -> int:
        return int(load_bundle(self.root / item)["f0"].shape[0])

    def _bundle(self, item: str) -> dict[str, torch.Tensor]:
        return load_bundle(self.root / item)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        gen = torch.Generator().manual_seed(hash((self.seed, int(epoch), int(index))) & 0x7FFFFFFF)
        bundle = self._bundle(self.items[index])
        hop = self.info.hop_length
        f0 = bundle["f0"].float()
        n = f0.shape[0]
        audio = bundle["audio"]
        audio = audio.float() / 32767.0 if audio.dtype == torch.int16 else audio.float()
        audio = audio[: n * hop]
        if audio.shape[0] < n * hop:
            audio = torch.nn.functional.pad(audio, (0, n * hop - audio.shape[0]))
        units = bundle["units"].float()
        perturbed = bundle.get("units_perturbed")
        if self.train and getattr(self, "perturbed_units", True) and perturbed is not None and len(perturbed):
            # a speaker-perturbed copy's units: the voice must come from the speaker embedding
            units = perturbed[int(torch.randint(0, len(perturbed), (1,), generator=gen))].float()
        voiced = bundle["voiced"].float()
        hold = getattr(self, "unvoiced_f0_hold", 0.0)
        if self.train and hold > 0 and float(torch.rand(1, generator=gen)) < hold:
            # unvoiced frames as a stream fills them (the last voiced F0), not interpolated towards the next voiced
            # frame: the model learns not to lean on a value a live stream cannot know
            f0 = hold_unvoiced(f0, voiced)
        volume = bundle.get("volume")
        volume = volume.float() if volume is not None else torch.zeros(n)
        spec = bundle.get("spec")
        start, end = 0, n
        if self.max_frames and n > self.max_frames:
            start = int(torch.randint(0, n - self.max_frames + 1, (1,), generator=gen)) if self.train else 0
            end = start + self.max_frames
        if self.vol_aug and self.train and float(torch.rand(1, generator=gen)) > 0.5:
            peak = float(audio.abs().max().clamp_min(1e-5))
            max_shift = min(1.0, math.log10(1.0 / peak))
            shift = float(torch.empty(1).uniform_(-1.0, max_shift, generator=gen))
            audio = audio * 10**shift
            volume = volume * 10**shift
            spec = None  # recomputed from the scaled audio
        audio = audio[start * hop:end * hop]
        if spec is not None:
            spec = spec[:, start:end].float()
        else:
            spec = self.spectrogram(audio.unsqueeze(0))[0]
        return {
            "units": units[:, start:end], "f0": f0[start:end], "voiced": voiced[start:end], "volume": volume[start:end],
            "spec": spec, "audio": audio, "speaker": int(bundle.get("speaker_id", self._speaker_of(index))),
            "name": self.items[index],
        }

    def _speaker_of(self, index: int) -> int:
        name = Path(self.items[index]).parts[0]
        if name not in self.info.speakers:
            raise UserFacingError(f"{self.items[index]}: speaker folder {name!r} is not in dataset.json speakers")
        return self.info.speakers[name]


def collate(examples: list[dict]) -> Batch:
    """Pad a list of dataset items into a :class:`Batch` (longest first, like upstream)."""
    examples = sorted(examples, key=lambda e: e["f0"].shape[0], reverse=True)
    b = len(examples)
    t = examples[0]["f0"].shape[0]
    hop = examples[0]["audio"].shape[0] // max(t, 1)
    d = examples[0]["units"].shape[0]
    nf = examples[0]["spec"].shape[0]
    units, spec = torch.zeros(b, d, t), torch.zeros(b, nf, t)
    f0, voiced, volume = torch.zeros(b, t), torch.zeros(b, t), torch.zeros(b, t)
    audio = torch.zeros(b, 1, t * hop)
    lengths = torch.zeros(b, dtype=torch.long)
    for i, e in enumerate(examples):
        n = e["f0"].shape[0]
        lengths[i] = n
        units[i, :, :n] = e["units"]
        spec[i, :, :n] = e["spec"]
        f0[i, :n], voiced[i, :n], volume[i, :n] = e["f0"], e["voiced"], e["volume"]
        audio[i, 0, : e["audio"].shape[0]] = e["audio"]
    speaker = torch.tensor([e["speaker"] for e in examples], dtype=torch.long)
    return Batch(units, f0, voiced, spec, audio, speaker, lengths, volume, [e["name"] for e in examples])


class BucketSampler(DistributedSampler):
    """Groups clips of similar length into batches, shuffles batches per epoch, and gives each rank
    its own batches (a :class:`DistributedSampler`, so Lightning does not wrap it again).

    Yields ``(index, epoch)`` pairs in batch order; use with ``DataLoader(batch_size=batch_size)``.
    Every bucket is filled up to whole batches by repeating its own clips, and the batch count is
    padded to a multiple of the number of ranks, so every rank runs the same number of steps.
    """

    def __init__(self, lengths: list[int], batch_size: int, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True, seed: int = 0, n_buckets: int = 8):
        # DistributedSampler.__init__ wants a dataset; we only need len()
        super().__init__(range(len(lengths)), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        order = np.argsort(self.lengths, kind="stable")
        n_buckets = max(1, min(n_buckets, len(order) // max(batch_size, 1)))
        self.buckets = [b.tolist() for b in np.array_split(order, n_buckets) if len(b)]
        n_batches = sum(math.ceil(len(b) / batch_size) for b in self.buckets)
        self.batches_per_rank = math.ceil(n_batches / num_replicas)
        self.skip_batches = 0  # batches of the next epoch trained before a mid-epoch checkpoint

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        batches = []
        for bucket in self.buckets:
            items = list(rng.permutation(bucket)) if self.shuffle else list(bucket)
            while len(items) % self.batch_size:
                items.append(items[len(items) % len(bucket)])
            batches += [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        while len(batches) < self.batches_per_rank * self.num_replicas:
            batches.append(batches[len(batches) % max(1, len(batches))])
        return batches[self.rank::self.num_replicas]

    def __iter__(self):
        batches, self.skip_batches = self._batches()[self.skip_batches:], 0
        for batch in batches:
            for index in batch:
                yield (int(index), int(self.epoch))

    def __len__(self) -> int:
        return self.batches_per_rank * self.batch_size
