"""The LightningDataModule: bucketed, DDP-sharded training batches and fixed validation clips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from svc_pl.data.dataset import BucketSampler, FeatureDataset, collate
from svc_pl.data.layout import DatasetInfo


class SVCDataModule(pl.LightningDataModule):
    """Feeds a dataset made by ``svc-pl preprocess`` (or a so-vits-svc 4.1 preprocessed tree, see
    :mod:`svc_pl.data.sovits_dataset`) to training.

    Args:
        dataset_dir: the preprocessed dataset (holds ``dataset.json``), or a so-vits-svc root
            (holds ``configs/config.json`` and ``filelists/``).
        batch_size: clips per batch and per device.
        num_workers: loader worker processes (persistent across epochs).
        max_frames: longest crop of a clip fed to the model (upstream: 790).
        n_buckets: length buckets for batching.
        vol_aug: random volume scaling (useful for models with ``vol_embedding``).
        val_clips: how many validation clips to evaluate and log.
        seed: base seed of the per-(epoch, clip) random crops.
        perturbed_units: train on the units of the clips' speaker-perturbed copies where the dataset has
            them (``svc-pl preprocess --perturb-copies``); False trains on the clean units.
        unvoiced_f0_hold: the share of training clips whose unvoiced frames carry the last voiced F0 (what a live
            stream feeds the model: it cannot interpolate towards a voiced frame it has not heard) instead of the
            interpolation between voiced neighbours (what a file gets); the model learns not to lean on either.
    """

    def __init__(self, dataset_dir: str, batch_size: int = 6, num_workers: int = 2, max_frames: int = 790,
                 n_buckets: int = 8, vol_aug: bool = False, val_clips: int = 4, seed: int = 1234,
                 perturbed_units: bool = True, unvoiced_f0_hold: float = 0.0):
        super().__init__()
        self.dataset_dir = dataset_dir
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_frames = max_frames
        self.n_buckets = n_buckets
        self.vol_aug = vol_aug
        self.val_clips = val_clips
        self.seed = seed
        self.perturbed_units = perturbed_units
        self.unvoiced_f0_hold = unvoiced_f0_hold
        self.info = self._load_info()
        self.train_set = self.val_set = None
        self._unit_stats: dict | None = None

    def _load_info(self) -> DatasetInfo:
        root = Path(self.dataset_dir)
        if not (root / "dataset.json").is_file() and (root / "configs" / "config.json").is_file():
            from svc_pl.data.sovits_dataset import sovits_dataset_info

            return sovits_dataset_info(root)
        return DatasetInfo.load(root)

    @property
    def dataset_info(self) -> dict[str, Any]:
        """What the model must know about the data (linked into the model by the CLI)."""
        return {"speakers": dict(self.info.speakers), "n_speakers": self.info.n_speakers,
                "unit_dim": self.info.unit_dim, "sampling_rate": self.info.sampling_rate,
                "hop_length": self.info.hop_length, "filter_length": self.info.filter_length,
                "win_length": self.info.win_length, "content_encoder": self.info.content_encoder,
                "f0_method": self.info.f0_method, "unit_interpolate_mode": self.info.unit_interpolate_mode,
                "unit_window": dict(self.info.unit_window)}

    def unit_stats(self) -> dict | None:
        """Per-speaker statistics of the training set's clean units (:mod:`svc_pl.data.unit_stats`), computed once;
        checkpoints store them for ``svc-pl infer --match-units``. None for so-vits-svc trees or when they
        cannot be read (training goes on; a warning says why)."""
        if self._unit_stats is None and self.info.format != "sovits":
            from svc_pl.data.unit_stats import compute_unit_stats
            from svc_pl.errors import UserFacingError

            try:
                self._unit_stats = compute_unit_stats(self.dataset_dir)
            except UserFacingError as err:
                import logging

                logging.getLogger(__name__).warning("no unit statistics in the checkpoints (--match-units will "
                                                    "need --unit-stats): %s", err)
                self._unit_stats = {}
        return self._unit_stats or None

    def _make(self, split: str, train: bool):
        if self.info.format == "sovits":
            from svc_pl.data.sovits_dataset import SovitsDataset

            ds = SovitsDataset(self.dataset_dir, split, self.max_frames if train else None, self.seed,
                               self.vol_aug, train)
            ds.unvoiced_f0_hold = self.unvoiced_f0_hold
            return ds
        return FeatureDataset(self.dataset_dir, split, self.max_frames if train else None, self.seed, self.vol_aug, train,
                              self.perturbed_units, self.unvoiced_f0_hold)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._make("train", train=True)
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self._make("val", train=False)

    def _loader_kwargs(self) -> dict[str, Any]:
        return {"num_workers": self.num_workers, "persistent_workers": self.num_workers > 0, "collate_fn": collate,
                "pin_memory": False}

    def train_dataloader(self) -> DataLoader:
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = BucketSampler(self.train_set.frame_lengths(), self.batch_size, num_replicas=world, rank=rank,
                                shuffle=True, seed=self.seed, n_buckets=self.n_buckets)
        if self.trainer is not None:  # resumed mid-epoch: Lightning restarts the loader, we go on where it was
            epoch, batches = self.trainer.fit_loop.epoch_progress.current, self.trainer.fit_loop.epoch_loop.batch_progress
            sampler.skip_batches = batches.current.processed if epoch.started > epoch.completed else 0
        # its own generator: a new epoch's iterator must not draw from the global random state, which
        # a mid-epoch checkpoint restores (the resumed run would then draw one number the other did not)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, drop_last=False,
                          generator=torch.Generator().manual_seed(self.seed), **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        from torch.utils.data import Subset

        subset = Subset(self.val_set, range(min(self.val_clips, len(self.val_set))))
        return DataLoader(subset, batch_size=1, shuffle=False, **self._loader_kwargs())
