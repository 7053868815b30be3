"""What every F0 extractor gives and shares: the per-frame :class:`PitchTrack`, the :class:`F0Extractor` base
(one value per spectrogram frame, voiced values kept in ``[f0_min, f0_max]``, unvoiced frames filled by linear
interpolation as so-vits-svc feeds F0 to its model), and the helpers on tracks: interpolating or holding unvoiced
frames and so-vits-svc's coarse pitch index. The extractors themselves: :mod:`svc_pl.data.pitch` (and how to pick
one), :mod:`svc_pl.data.f0_nets` (the networks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PitchTrack:
    """One F0 value per frame; all arrays (N,) float32.

    Attributes:
        f0: Hz, unvoiced frames linearly interpolated between voiced neighbours (edges held).
        voiced: 1.0 voiced, 0.0 unvoiced (upstream ``uv``).
        raw: Hz with 0 on unvoiced frames, before interpolation.
    """

    f0: np.ndarray
    voiced: np.ndarray
    raw: np.ndarray


def interpolate_unvoiced(f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill unvoiced (<= 0) frames linearly from voiced ones; before the first / after the last voiced frame hold it.

    Args:
        f0: (N,) Hz, 0 where unvoiced.
    Returns:
        (f0 (N,) float32 interpolated, voiced (N,) float32 1/0). All-unvoiced input gives zeros.
    """
    f0 = np.asarray(f0, dtype=np.float64)
    voiced = f0 > 0
    if not voiced.any():
        return np.zeros(len(f0), np.float32), voiced.astype(np.float32)
    idx = np.flatnonzero(voiced)
    filled = np.interp(np.arange(len(f0)), idx, f0[idx])
    return filled.astype(np.float32), voiced.astype(np.float32)


def hold_unvoiced(f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """F0 (T,) whose unvoiced frames carry the last voiced frame's value, as a live stream has them (it cannot
    interpolate towards a voiced frame it has not heard yet); frames before the first voiced one keep ``f0``."""
    v = voiced > 0
    if not bool(v.any()):
        return f0.clone()
    idx = torch.where(v, torch.arange(len(f0)), torch.zeros_like(f0, dtype=torch.long))
    last = torch.cummax(idx, 0).values  # index of the latest voiced frame at or before each frame
    held = f0[last]
    first = int(torch.nonzero(v)[0])
    held[:first] = f0[:first]
    return held


def f0_to_coarse(f0: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Hz -> so-vits-svc's 256-bin mel-scale pitch index (same shape, int64), for numpy or torch input.

    Thin wrapper over the synthesizer's :func:`svc_pl.layers.f0.f0_to_coarse` (the one definition).
    """
    from svc_pl.layers.f0 import f0_to_coarse as coarse

    if isinstance(f0, torch.Tensor):
        return coarse(f0)
    return coarse(torch.as_tensor(np.asarray(f0, dtype=np.float32))).numpy()

class F0Extractor:
    """Base class: subclasses implement :meth:`_raw`, the unvoiced-as-zero track on the target frames."""

    name: str = ""

    def __init__(self, sample_rate: int = 44100, hop_length: int = 512, f0_min: float = 50.0, f0_max: float = 1100.0):
        if not 0 < f0_min < f0_max:
            raise ValueError(f"need 0 < f0_min < f0_max, got f0_min={f0_min}, f0_max={f0_max}")
        if sample_rate <= 0 or hop_length <= 0:
            raise ValueError(f"sample_rate and hop_length must be positive, got {sample_rate}, {hop_length}")
        self.sample_rate = int(sample_rate)
        self.hop_length = int(hop_length)
        self.f0_min = float(f0_min)
        self.f0_max = float(f0_max)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sr={self.sample_rate}, hop={self.hop_length}, {self.f0_min}-{self.f0_max} Hz)"

    def compute(self, audio: np.ndarray, n_frames: int | None = None, frames: np.ndarray | None = None) -> PitchTrack:
        """F0 of mono ``audio``.

        Args:
            audio: (T,) float waveform at ``sample_rate``.
            n_frames: number of output frames; default ``T // hop_length`` (the spectrogram frame count).
            frames: optional (n_frames,) bool mask of the frames the caller will read. An extractor may save work
                by leaving the others unvoiced (CREPE runs its network only near them); the rest ignore it.
        Returns:
            :class:`PitchTrack` of (n_frames,) float32 arrays.
        """
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"{self.name}: expected mono audio of shape (T,), got shape {audio.shape}")
        if not np.isfinite(audio).all():
            raise ValueError(f"{self.name}: audio holds NaN or infinite samples")
        n = len(audio) // self.hop_length if n_frames is None else int(n_frames)
        if n < 0:
            raise ValueError(f"{self.name}: n_frames must be >= 0, got {n}")
        if frames is not None:
            frames = np.asarray(frames, dtype=bool)
            if frames.shape != (n,):
                raise ValueError(f"{self.name}: frames mask must have shape ({n},), got {frames.shape}")
        if n == 0 or len(audio) == 0:
            raw = np.zeros(n)
        else:
            raw = np.asarray(self._raw(audio, n) if frames is None else self._raw_frames(audio, n, frames),
                             dtype=np.float64)
        raw = np.where(raw >= self.f0_min, np.minimum(raw, self.f0_max), 0.0)
        f0, voiced = interpolate_unvoiced(raw)
        return PitchTrack(f0=f0, voiced=voiced, raw=raw.astype(np.float32))

    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        """audio (T,) float32 -> (n,) Hz, 0 where unvoiced."""
        raise NotImplementedError

    def _raw_frames(self, audio: np.ndarray, n: int, frames: np.ndarray) -> np.ndarray:
        """As :meth:`_raw`, where only the ``frames`` (bool (n,)) need be right; by default all are computed."""
        return self._raw(audio, n)
