"""Information perturbation: copies of a clip that keep its words and timing but not its speaker.

The content encoder sees these copies during training (``svc-pl preprocess --perturb-copies N`` writes the
units of N copies per clip; the dataset draws one per step), so the decoder cannot take timbre from the
units and must take it from the speaker embedding. As NANSY (Choi et al., 2021) does:

* formant shift and pitch randomisation with Praat's "Change gender" (PSOLA; duration unchanged, so
  frames stay aligned with the clean clip's F0 and audio);
* a random parametric equaliser: a low shelf, a high shelf and three peaking filters with random centre
  frequency, gain and Q (RBJ biquads).

The clean units stay in the bundle (``units``): conversion, retrieval indexes and the speaker-information
figures use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import sosfilt


@dataclass(frozen=True)
class PerturbSettings:
    """Ranges of the random perturbation (NANSY's, slightly narrower in pitch for singing)."""

    formant_ratio: float = 1.4  # formant shift drawn log-uniformly in [1/r, r]
    pitch_ratio: float = 2.0  # median F0 moved log-uniformly in [1/r, r]
    pitch_range_ratio: float = 1.5  # F0 range scaled log-uniformly in [1/r, r]
    peq_gain_db: float = 12.0  # each band's gain uniform in [-g, g]
    peq_bands: int = 3


def _loguniform(rng: np.random.Generator, ratio: float) -> float:
    return float(np.exp(rng.uniform(-np.log(ratio), np.log(ratio))))


def _biquad(kind: str, f0: float, sr: int, gain_db: float, q: float) -> np.ndarray:
    """One RBJ-cookbook second-order section (b0, b1, b2, 1, a1, a2)."""
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * f0 / sr
    cw, sw = np.cos(w), np.sin(w)
    alpha = sw / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        sa = 2 * np.sqrt(a) * alpha
        if kind == "low":
            b = [a * ((a + 1) - (a - 1) * cw + sa), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - sa)]
            den = [(a + 1) + (a - 1) * cw + sa, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sa]
        else:
            b = [a * ((a + 1) + (a - 1) * cw + sa), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - sa)]
            den = [(a + 1) - (a - 1) * cw + sa, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sa]
    return np.array([*(np.array(b) / den[0]), 1.0, den[1] / den[0], den[2] / den[0]])


def random_eq(y: np.ndarray, sr: int, rng: np.random.Generator, s: PerturbSettings = PerturbSettings()) -> np.ndarray:
    """Low shelf (60-500 Hz), high shelf (2-6 kHz, below Nyquist) and ``peq_bands`` peaking filters with random
    gains in +-``peq_gain_db``; the output keeps the input's peak level."""
    nyq = sr / 2
    sections = [_biquad("low", rng.uniform(60, 500), sr, rng.uniform(-s.peq_gain_db, s.peq_gain_db), 0.707),
                _biquad("high", min(rng.uniform(2000, 6000), 0.8 * nyq), sr,
                        rng.uniform(-s.peq_gain_db, s.peq_gain_db), 0.707)]
    for _ in range(s.peq_bands):
        f = float(np.exp(rng.uniform(np.log(150), np.log(0.8 * nyq))))
        sections.append(_biquad("peak", f, sr, rng.uniform(-s.peq_gain_db, s.peq_gain_db), rng.uniform(0.5, 4.0)))
    out = sosfilt(np.stack(sections), y.astype(np.float64))
    peak_in, peak_out = float(np.abs(y).max()), float(np.abs(out).max())
    return (out * (peak_in / peak_out) if peak_out > 0 else out).astype(np.float32)


def change_gender(y: np.ndarray, sr: int, formant_ratio: float, pitch_ratio: float, range_ratio: float,
                  median_f0: float | None, seed: int = 0) -> np.ndarray:
    """Praat's "Change gender" (formant shift, new median pitch, pitch range factor), same length as ``y``.

    Praat's PSOLA draws random numbers (unvoiced stretches); they come from ``seed``, so a copy repeats."""
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(y.astype(np.float64), sampling_frequency=sr)
    new_median = 0.0 if not median_f0 else float(np.clip(median_f0 * pitch_ratio, 60.0, 1000.0))
    parselmouth.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed)})")
    try:
        out = call(snd, "Change gender", 60, 1100, formant_ratio, new_median, range_ratio, 1.0)
    finally:
        parselmouth.praat.run("random_initializeSafelyAndUnpredictably ()")
    z = np.asarray(out.values[0], np.float32)
    if len(z) < len(y):
        z = np.pad(z, (0, len(y) - len(z)))
    return z[: len(y)]


def perturb(y: np.ndarray, sr: int, rng: np.random.Generator, median_f0: float | None = None,
            settings: PerturbSettings = PerturbSettings()) -> np.ndarray:
    """A speaker-perturbed copy of mono audio ``y`` (same length and rate): formant shift, pitch
    randomisation (``median_f0`` is the clip's voiced median in Hz; None or 0 keeps the pitch), random EQ; the
    copy has the input's peak level."""
    s = settings
    z = change_gender(y, sr, _loguniform(rng, s.formant_ratio), _loguniform(rng, s.pitch_ratio),
                      _loguniform(rng, s.pitch_range_ratio), median_f0, seed=int(rng.integers(1, 2**31 - 1)))
    z = random_eq(z, sr, rng, s)
    peak_in, peak_out = float(np.abs(y).max()), float(np.abs(z).max())
    return z * np.float32(peak_in / peak_out) if peak_out > 0 else z
