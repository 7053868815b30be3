"""Read a so-vits-svc 4.1 preprocessed dataset in place, so users can migrate without preprocessing again.

The layout (under the so-vits-svc root): ``configs/config.json``; file lists named by its
``data.training_files``/``validation_files`` with one wav path per line; beside each ``x.wav``:
``x.wav.soft.pt`` (units at the encoder's rate), ``x.wav.f0.npy`` (an object array ``(f0, uv)``),
optional ``x.spec.pt`` and ``x.wav.vol.npy``. The ``.npy`` object arrays are unpickled with a
restricted unpickler that accepts only numpy's array-rebuilding functions, never arbitrary code.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from svc_pl.compat.config import read_sovits_config
from svc_pl.data.dataset import FeatureDataset
from svc_pl.data.layout import DatasetInfo, read_filelist
from svc_pl.errors import UserFacingError
from svc_pl.io import loads_restricted

LOG = logging.getLogger(__name__)


def load_npy_safe(path: str | Path) -> np.ndarray:
    """np.load without running pickled code: numeric arrays as usual, object arrays via a numpy-only unpickler."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        obj = loads_restricted(f.read(), what="feature file")
    return obj


def sovits_dataset_info(root: str | Path) -> DatasetInfo:
    root = Path(root)
    cfg = read_sovits_config(root / "configs" / "config.json")
    return DatasetInfo(speakers=dict(cfg.spk), sampling_rate=cfg.sampling_rate, hop_length=cfg.hop_length,
                       filter_length=int(cfg.data["filter_length"]), win_length=int(cfg.data["win_length"]),
                       content_encoder=cfg.speech_encoder, unit_dim=int(cfg.model["ssl_dim"]), f0_method="unknown",
                       unit_interpolate_mode=cfg.data.get("unit_interpolate_mode", "nearest"), format="sovits",
                       extra={"max_wav_value": float(cfg.data.get("max_wav_value", 32768.0)),
                              "training_files": cfg.data.get("training_files", "filelists/train.txt"),
                              "validation_files": cfg.data.get("validation_files", "filelists/val.txt")})


class SovitsDataset(FeatureDataset):
    """:class:`FeatureDataset` over a so-vits-svc 4.1 preprocessed tree (same item format)."""

    def __init__(self, root: str | Path, split: str = "train", max_frames: int | None = 790, seed: int = 1234,
                 vol_aug: bool = False, train: bool = True):
        from svc_pl.data.spectral import LinearSpectrogram

        self.root = Path(root)
        self.info = sovits_dataset_info(self.root)
        lst = self.info.extra["training_files" if split == "train" else "validation_files"]
        self.items = read_filelist(self.root / lst)
        if not self.items:
            raise UserFacingError(f"{self.root / lst} lists no clips")
        self.max_frames, self.seed, self.vol_aug, self.train = max_frames, seed, vol_aug, train
        self.spectrogram = LinearSpectrogram(self.info.filter_length, self.info.hop_length, self.info.win_length)
        self._lengths = None

    def _wav(self, item: str) -> Path:
        return (self.root / item).resolve() if not Path(item).is_absolute() else Path(item)

    def _read_frames(self, item: str) -> int:
        f0, _ = load_npy_safe(f"{self._wav(item)}.f0.npy")
        return int(len(f0))

    def _speaker_of(self, index: int) -> int:
        name = self._wav(self.items[index]).parent.name
        if name not in self.info.speakers:
            raise UserFacingError(f"{self.items[index]}: speaker {name!r} is not in configs/config.json 'spk'")
        return self.info.speakers[name]

    def _bundle(self, item: str) -> dict[str, torch.Tensor]:
        from svc_pl.data.content import units_to_frames

        wav = self._wav(item)
        try:
            audio, sr = sf.read(wav, dtype="float32", always_2d=False)
            f0, uv = load_npy_safe(f"{wav}.f0.npy")
            units = torch.load(f"{wav}.soft.pt", map_location="cpu", weights_only=True).float()
        except (OSError, RuntimeError, pickle.UnpicklingError, ValueError) as err:
            raise UserFacingError(f"{wav}: cannot read its so-vits-svc features ({err}); "
                                  "re-run preprocessing") from None
        if sr != self.info.sampling_rate:
            raise UserFacingError(f"{wav}: {sr} Hz but the config says {self.info.sampling_rate} Hz")
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        f0 = torch.as_tensor(np.asarray(f0, dtype=np.float32))
        units = units.squeeze(0) if units.dim() == 3 else units
        units = units_to_frames(units.unsqueeze(0), f0.shape[0], mode=self.info.unit_interpolate_mode)[0]
        bundle = {"audio": torch.from_numpy(np.ascontiguousarray(audio)), "units": units, "f0": f0,
                  "voiced": torch.as_tensor(np.asarray(uv, dtype=np.float32))}
        spec_path = Path(str(wav).replace(".wav", ".spec.pt"))
        if spec_path.is_file():
            spec = torch.load(spec_path, map_location="cpu", weights_only=True)
            bundle["spec"] = spec.squeeze(0) if spec.dim() == 3 else spec
        vol_path = Path(f"{wav}.vol.npy")
        if vol_path.is_file():
            bundle["volume"] = torch.as_tensor(load_npy_safe(vol_path).astype(np.float32))
        return bundle
