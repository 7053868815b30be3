"""One F0 reading from several trackers' readings of the same frames, by agreement.

Each tracker is wrong in its own places: FCPE reads some low male voices (80-100 Hz) an octave up in runs of
frames and cannot read pitch above about 1.1 kHz; Praat's autocorrelation settles on F0/2 or F0/3 for whole sung
notes; CREPE is right more often but slow at full size. Where two of them read the same pitch, that reading is
kept, so one tracker's octave error is outvoted (docs/quality.md, "Gross F0 errors that were the judge's").
"""

from __future__ import annotations

import numpy as np

AGREE_CENTS = 50.0


def agree(a: np.ndarray, b: np.ndarray, agree_cents: float = AGREE_CENTS) -> np.ndarray:
    """Frames where two raw tracks (Hz, 0 unvoiced; same shape) are both voiced and within ``agree_cents``."""
    voiced = (a > 0) & (b > 0)
    return voiced & (np.abs(1200 * np.log2(np.where(voiced, a, 1.0) / np.where(voiced, b, 1.0))) <= agree_cents)


def vote(tracks: list[np.ndarray], agree_cents: float = AGREE_CENTS) -> np.ndarray:
    """Per frame, the pitch that at least two tracks agree on.

    Args:
        tracks: K >= 2 raw tracks, each (N,) Hz with 0 where that tracker hears no pitch; the first is preferred
            for the value where it is one of an agreeing pair (the others only decide the octave).
        agree_cents: two readings within this many cents agree.
    Returns:
        (N,) Hz, 0 where fewer than two tracks are voiced. Where at least two are voiced but none agree, the voiced
        reading nearest (in cents) the previous frame's result is kept, or the first voiced one at the start of a
        voiced run.
    """
    if len(tracks) < 2:
        raise ValueError(f"vote needs at least two tracks, got {len(tracks)}")
    n = min(len(t) for t in tracks)
    x = np.stack([np.asarray(t[:n], dtype=np.float64) for t in tracks])  # (K, N)
    voiced = x > 0
    cents = 1200 * np.log2(np.where(voiced, x, 1.0))
    out = np.zeros(n)
    prev = 0.0  # cents of the previous frame's result, 0 when it was unvoiced
    for j in range(n):
        idx = np.flatnonzero(voiced[:, j])
        if len(idx) < 2:
            prev = 0.0
            continue
        c = cents[idx, j]
        close = np.abs(c[:, None] - c[None, :]) <= agree_cents  # (k, k), diagonal True
        support = close.sum(axis=1) - 1
        if support.max() > 0:
            pick = int(np.argmax(support))  # first of the best supported: the preferred track when it agrees
        elif prev:
            pick = int(np.argmin(np.abs(c - prev)))
        else:
            pick = 0
        out[j] = x[idx[pick], j]
        prev = c[pick]
    return out
