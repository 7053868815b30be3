"""Moving an input's content units to the target speaker's unit statistics (``--match-units RATIO``).

Each unit dimension of the input is standardised with the input's own running mean and spread (every frame
converted so far in this file or stream, the current piece included) and given the target speaker's mean and
spread from the units the model was trained on (:mod:`svc_pl.data.unit_stats`); ``ratio`` blends the result with
the unchanged units (0 off, 1 fully moved). The per-voice offset and scale the units carry go, the frame-to-frame
content stays. Measured in docs/quality.md ("Units moved to the target's statistics").
"""

from __future__ import annotations

import torch

from svc_pl.data.unit_stats import STD_FLOOR
from svc_pl.errors import UserFacingError


class UnitMatcher:
    """The target speakers' statistics and the running statistics of the input being converted.

    Args:
        stats: {speaker name: {"mean": (C,), "std": (C,)}}, as :func:`svc_pl.data.unit_stats.compute_unit_stats`.
        source: where the statistics came from, for error messages.
    """

    def __init__(self, stats: dict[str, dict], source: str = "the model"):
        self.stats = stats
        self.source = source
        self.reset()

    def reset(self) -> None:
        """Start a new input (file or stream): forget the running statistics."""
        self._n = 0
        self._sum = self._sumsq = None

    def observe(self, units: torch.Tensor) -> None:
        """Add the frames of ``units`` (C, T) to the input's running statistics."""
        u = units.detach().double()
        if self._sum is None:
            self._sum, self._sumsq = torch.zeros(u.shape[0], dtype=torch.float64), torch.zeros(u.shape[0], dtype=torch.float64)
        self._sum += u.sum(1).cpu()
        self._sumsq += (u * u).sum(1).cpu()
        self._n += u.shape[1]

    def target(self, speaker: str | dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of a speaker, or the weighted blend of a mix {name: weight}."""
        weights = speaker if isinstance(speaker, dict) else {speaker: 1.0}
        missing = [str(k) for k in weights if str(k) not in self.stats]
        if missing:
            raise UserFacingError(
                f"{self.source} has no unit statistics for speaker(s) {', '.join(missing)} (it has: "
                f"{', '.join(sorted(self.stats))}); pass --unit-stats with the dataset that speaker was trained on, "
                "or --match-units 0")
        total = sum(float(w) for w in weights.values()) or 1.0
        mean = sum(float(w) / total * self.stats[str(k)]["mean"] for k, w in weights.items())
        std = sum(float(w) / total * self.stats[str(k)]["std"] for k, w in weights.items())
        return mean, std

    def apply(self, units: torch.Tensor, speaker: str | dict[str, float], ratio: float) -> torch.Tensor:
        """Units (B, C, T) moved ``ratio`` of the way to the speaker's statistics (call :meth:`observe` first)."""
        if ratio <= 0 or self._n == 0:  # nothing heard yet (a stream's first frames): nothing to move from
            return units
        mean_t, std_t = self.target(speaker)
        if mean_t.numel() != units.shape[1]:
            raise UserFacingError(f"{self.source}: unit statistics have {mean_t.numel()} dimensions, the content "
                                  f"encoder gives {units.shape[1]}; they were made with another encoder")
        mean_s = self._sum / self._n
        std_s = (self._sumsq / self._n - mean_s * mean_s).clamp_min(0).sqrt().clamp_min(STD_FLOOR)
        scale = (std_t.double() / std_s).to(units)[None, :, None]
        shift = (mean_t.double() - mean_s * std_t.double() / std_s).to(units)[None, :, None]
        moved = units * scale + shift
        return units + ratio * (moved - units) if ratio < 1 else moved
