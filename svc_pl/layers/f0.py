"""F0 transforms used inside the synthesizer (upstream: ``utils.f0_to_coarse``/``normalize_f0``)."""

from __future__ import annotations

import math
from typing import Literal

import torch

F0_BIN = 256
F0_MIN = 50.0
F0_MAX = 1100.0
F0_MEL_MIN = 1127 * math.log(1 + F0_MIN / 700)
F0_MEL_MAX = 1127 * math.log(1 + F0_MAX / 700)


CoarsePitch = Literal["4.1", "4.0"]


def f0_to_coarse(f0: torch.Tensor, version: CoarsePitch = "4.1") -> torch.Tensor:
    """Hz -> 256-bin mel-scale pitch index. (B, T) float -> (B, T) long.

    Unvoiced (0 Hz) and anything below 50 Hz -> 1; 50..1100 Hz -> 1..255. ``version`` picks the mapping of the
    so-vits-svc release the model comes from; they differ only at half-bin ties and above the range:

    - "4.1" (upstream since July 2023): round half to even; an index past 255 (above about 1105 Hz) becomes 0,
      an embedding row trained models have seen.
    - "4.0": round half up, and anything above the range is clipped to 255.
    """
    f0_mel = 1127 * (1 + f0 / 700).log()
    if version == "4.0":  # upstream 4.0's utils.f0_to_coarse, operation for operation (float32 rounding included)
        f0_mel = torch.where(f0_mel > 0, (f0_mel - F0_MEL_MIN) * (F0_BIN - 2) / (F0_MEL_MAX - F0_MEL_MIN) + 1, f0_mel)
        return (f0_mel.clamp(1, F0_BIN - 1) + 0.5).long()
    if version != "4.1":
        raise ValueError(f"coarse pitch version {version!r} is not one of '4.1', '4.0'")
    a = (F0_BIN - 2) / (F0_MEL_MAX - F0_MEL_MIN)
    b = F0_MEL_MIN * a - 1.0
    f0_mel = torch.where(f0_mel > 0, f0_mel * a - b, f0_mel)
    coarse = torch.round(f0_mel).long().clamp_min(1)
    return torch.where(coarse < F0_BIN, coarse, torch.zeros_like(coarse))


def f0_to_lf0(f0: torch.Tensor) -> torch.Tensor:
    """Hz (B, T) -> scaled log-mel F0 (B, 1, T) as the F0 decoder predicts it."""
    return 2595.0 * torch.log10(1.0 + f0.unsqueeze(1) / 700.0) / 500


def lf0_to_f0(lf0: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`f0_to_lf0`: (B, 1, T) -> Hz (B, T)."""
    return (700 * (torch.pow(10, lf0 * 500 / 2595) - 1)).squeeze(1)


def normalize_f0(lf0: torch.Tensor, x_mask: torch.Tensor, uv: torch.Tensor, random_scale: bool = True) -> torch.Tensor:
    """Subtract each item's mean over voiced frames (and, in training, scale by U(0.8, 1.2)).

    Args:
        lf0: (B, 1, T); x_mask: (B, 1, T); uv: (B, T) voiced flags.
    Returns:
        (B, 1, T) normalised, masked. Raises FloatingPointError on non-finite input instead of exiting.
    """
    uv_sum = torch.sum(uv, dim=1, keepdim=True)
    uv_sum = torch.where(uv_sum == 0, torch.full_like(uv_sum, 9999), uv_sum)
    means = torch.sum(lf0[:, 0, :] * uv, dim=1, keepdim=True) / uv_sum
    if random_scale:
        factor = torch.empty(lf0.shape[0], 1).uniform_(0.8, 1.2).to(lf0.device)
    else:
        factor = torch.ones(lf0.shape[0], 1, device=lf0.device)
    f0_norm = (lf0 - means.unsqueeze(-1)) * factor.unsqueeze(-1)
    return f0_norm * x_mask
