"""The preprocessed dataset on disk: ``dataset.json`` + ``train.txt``/``val.txt`` + one feature bundle
(``.pt``) per clip. Written by ``svc-pl preprocess``, read by the dataset and by training.

A bundle is a dict of tensors (loaded with ``weights_only=True``):

==========  ============================  ==============================================
key         shape / dtype                 meaning
==========  ============================  ==============================================
audio       (T,) int16                    mono PCM at ``sampling_rate`` (scaled by 32767)
units       (D, N) float16                content units stretched to the N F0 frames
f0          (N,) float32                  Hz, unvoiced frames interpolated
voiced      (N,) float32                  1 voiced / 0 unvoiced
volume      (N,) float32                  frame RMS volume (so-vits-svc ``vol``)
spec        (n_fft//2+1, N) float16       optional cached linear spectrogram
units_perturbed (K, D, N) float16        optional: units of K speaker-perturbed copies
                                          (``svc-pl preprocess --perturb-copies K``), what
                                          training reads in place of ``units``
==========  ============================  ==============================================

with N == T // hop_length.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from svc_pl.errors import UserFacingError
from svc_pl.io import save_torch_atomic, write_json_atomic, write_text_atomic

FORMAT_VERSION = 1


@dataclass
class DatasetInfo:
    """``dataset.json``: what training needs to know about a preprocessed dataset."""

    speakers: dict[str, int]
    sampling_rate: int = 44100
    hop_length: int = 512
    filter_length: int = 2048
    win_length: int = 2048
    content_encoder: str = "vec768l12"
    unit_dim: int = 768
    f0_method: str = "pm"
    unit_interpolate_mode: str = "nearest"
    unit_window: dict[str, int] = field(default_factory=dict)  # UnitWindow.to_dict(); {}: whole-clip units
    format: str = "svc_pl"  # or "sovits" for a so-vits-svc 4.1 preprocessed dataset
    version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_speakers(self) -> int:
        return max(self.speakers.values(), default=-1) + 1

    def save(self, directory: str | os.PathLike) -> None:
        d = asdict(self)
        d["n_speakers"] = self.n_speakers
        write_json_atomic(Path(directory) / "dataset.json", d)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> DatasetInfo:
        path = Path(directory) / "dataset.json"
        if not path.is_file():
            raise UserFacingError(f"{path} not found: {directory} is not a preprocessed dataset "
                                  "(run `svc-pl preprocess dataset_raw OUTPUT_DIR` first)")
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw.pop("n_speakers", None)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})


def save_bundle(path: str | os.PathLike, bundle: dict[str, torch.Tensor]) -> None:
    """Write one clip's features atomically."""
    save_torch_atomic(bundle, path)


def load_bundle(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated/corrupt file: report which one
        raise UserFacingError(f"{path}: unreadable feature file ({type(err).__name__}: {err}); "
                              "delete it and re-run `svc-pl preprocess` to rebuild it") from None
    missing = [k for k in ("audio", "units", "f0", "voiced") if k not in bundle]
    if missing:
        raise UserFacingError(f"{path}: feature file lacks {missing}; re-run `svc-pl preprocess`")
    return bundle


def read_filelist(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"{path}: file list not found")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_filelist(path: str | os.PathLike, items: list[str]) -> None:
    write_text_atomic(path, "".join(f"{i}\n" for i in items))
