"""F0 (pitch) extraction shared by preprocessing, inference and evaluation (upstream: ``modules/F0Predictor``).

``get_f0_extractor(method, ...)`` returns an :class:`F0Extractor`; ``compute(audio)`` gives a
:class:`PitchTrack` with exactly one value per spectrogram frame (``len(audio) // hop_length`` by
default), frame ``j`` sitting at ``j * hop_length / sample_rate`` seconds. Every method keeps voiced
values in ``[f0_min, f0_max]`` (below the floor counts as unvoiced, above the ceiling is clipped) and
fills unvoiced frames by linear interpolation, as so-vits-svc feeds F0 to its model.

Methods: ``pm`` (Praat autocorrelation), ``dio`` and ``harvest`` (WORLD + StoneMask), ``crepe``
(torchcrepe, bundled weights), ``fcpe`` (torchfcpe, bundled weights), ``rmvpe`` (our
:mod:`svc_pl.data.rmvpe` with a user-supplied ``rmvpe.pt``), ``pesto`` (pesto-pitch, its bundled 0.5 MB model
trained on sung MIR-1K; the optional extra ``svc_pl[pesto]``), ``vote`` (FCPE, CREPE tiny and Praat, per frame the
pitch two agree on: :mod:`svc_pl.data.f0_vote`). Each library is imported only when
its extractor is built, and each extractor loads its network once.

Here: the factory, the classic trackers (pm, dio, harvest) and the vote; the networks are in
:mod:`svc_pl.data.f0_nets`, the track and the extractors' base class in :mod:`svc_pl.data.f0_track`.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch

from svc_pl.data.f0_nets import CrepeExtractor, FCPEExtractor, PestoExtractor, RMVPEExtractor
from svc_pl.data.f0_track import (  # noqa: F401  (part of this module's API)
    F0Extractor,
    PitchTrack,
    f0_to_coarse,
    hold_unvoiced,
    interpolate_unvoiced,
)

LOG = logging.getLogger(__name__)

METHODS = ("pm", "dio", "harvest", "crepe", "fcpe", "rmvpe", "pesto", "vote")


def get_f0_extractor(
    method: str,
    sample_rate: int = 44100,
    hop_length: int = 512,
    f0_min: float = 50.0,
    f0_max: float = 1100.0,
    device: str | torch.device | None = None,
    model_path: str | None = None,
    threshold: float | None = None,
    crepe_model: Literal["full", "tiny"] = "full",
) -> F0Extractor:
    """Build the extractor for ``method`` (one of :data:`METHODS`).

    Args:
        device: for crepe/fcpe/rmvpe; None picks CUDA when available.
        model_path: rmvpe only: upstream's ``rmvpe.pt``.
        threshold: voicing threshold of pm (Praat's, default 0.6 as so-vits-svc), crepe (periodicity, 0.05), fcpe
            (0.006, torchfcpe's default for its bundled model), rmvpe (salience, 0.05) and pesto (confidence, 0.5);
            dio and harvest have none (a warning says so when one is given).
        crepe_model: crepe capacity, "full" (upstream's choice) or "tiny" (about 10x faster).
    Raises:
        ValueError: unknown method. RMVPEWeightsError: rmvpe without a usable ``model_path``.
    """
    common = dict(sample_rate=sample_rate, hop_length=hop_length, f0_min=f0_min, f0_max=f0_max)
    if method == "pm":
        return PMExtractor(**common, threshold=0.6 if threshold is None else threshold)
    if method in ("dio", "harvest"):
        if threshold is not None:
            LOG.warning("the F0 threshold %s has no effect on %s (WORLD's voicing decision has no threshold); "
                        "use pm, crepe, fcpe or rmvpe to set one", threshold, method)
        return WorldExtractor(algorithm=method, **common)
    if method == "crepe":
        return CrepeExtractor(**common, device=device, threshold=0.05 if threshold is None else threshold,
                              model=crepe_model)
    if method == "fcpe":
        return FCPEExtractor(**common, device=device, threshold=0.006 if threshold is None else threshold)
    if method == "rmvpe":
        return RMVPEExtractor(**common, device=device, model_path=model_path,
                              threshold=0.05 if threshold is None else threshold)
    if method == "pesto":
        return PestoExtractor(**common, device=device, threshold=0.5 if threshold is None else threshold)
    if method == "vote":
        if threshold is not None:
            LOG.warning("the F0 threshold %s has no effect on vote (each of its trackers keeps its own)", threshold)
        return VoteExtractor(**common, device=device)
    raise ValueError(f"unknown f0 method {method!r}; choose one of: {', '.join(METHODS)}")

class PMExtractor(F0Extractor):
    """Praat's autocorrelation pitch (voicing threshold 0.6 by default, as so-vits-svc), read at our frame times
    (frame j at j * hop; Praat's frames sit there or half a frame off, see :func:`_sample_track`); frames whose
    analysis window does not fit in the audio are unvoiced."""

    name = "pm"

    def __init__(self, threshold: float = 0.6, **kwargs):
        super().__init__(**kwargs)
        import parselmouth

        self._parselmouth = parselmouth
        self.threshold = float(threshold)

    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        sound = self._parselmouth.Sound(audio.astype(np.float64), self.sample_rate)
        pitch = sound.to_pitch_ac(time_step=self.hop_length / self.sample_rate, voicing_threshold=self.threshold,
                                  pitch_floor=self.f0_min, pitch_ceiling=self.f0_max)
        f0 = pitch.selected_array["frequency"]
        if not len(f0):
            return np.zeros(n)
        return _sample_track(f0, (np.arange(n) * self.hop_length / self.sample_rate - pitch.xs()[0]) / pitch.time_step)


def _sample_track(f0: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """F0 (M,) Hz (0 unvoiced) read at fractional frame positions ``pos`` (n,): a frame's own value where ``pos`` is
    whole; between two frames the voiced one, or both geometrically interpolated; outside the track 0.

    Praat centres its frames in the sound, so they fall on our grid (frame j at j * hop) or half a frame off it,
    depending on how the sound's length rounds; reading at the grid's times keeps every segment of a stream on the
    whole file's grid."""
    m = len(f0)
    near = np.rint(pos)
    exact = np.abs(pos - near) < 1e-6
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, m - 1)
    i1 = np.minimum(i0 + 1, m - 1)
    w = np.clip(pos - np.floor(pos), 0.0, 1.0)
    a, b = f0[i0], f0[i1]
    va, vb = a > 0, b > 0
    log_mix = (1 - w) * np.log(np.where(va, a, 1.0)) + w * np.log(np.where(vb, b, 1.0))
    between = np.where(va & vb, np.exp(log_mix), np.where(va & (w <= 0.5), a, np.where(vb & (w >= 0.5), b, 0.0)))
    out = np.where(exact, f0[np.clip(near.astype(np.int64), 0, m - 1)], between)
    out[(pos < -1e-6) | (pos > m - 1 + 1e-6)] = 0.0
    return out


class WorldExtractor(F0Extractor):
    """WORLD's DIO or Harvest refined by StoneMask, linearly resized to ``n`` frames (unvoiced stays 0)."""

    def __init__(self, algorithm: Literal["dio", "harvest"] = "dio", **kwargs):
        super().__init__(**kwargs)
        import pyworld

        if algorithm not in ("dio", "harvest"):
            raise ValueError(f"WORLD algorithm must be 'dio' or 'harvest', got {algorithm!r}")
        self.name = algorithm
        self._pyworld = pyworld

    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        x = audio.astype(np.float64)
        track = self._pyworld.dio if self.name == "dio" else self._pyworld.harvest
        f0, t = track(x, fs=self.sample_rate, f0_floor=self.f0_min, f0_ceil=self.f0_max,
                      frame_period=1000 * self.hop_length / self.sample_rate)
        f0 = self._pyworld.stonemask(x, f0, t, self.sample_rate)
        if self.name == "dio":
            f0 = np.round(f0, 1)  # as upstream
        # Resize over frame indices; NaN marks unvoiced so a frame next to silence is not averaged with 0 Hz.
        src = np.where(f0 < 1e-3, np.nan, f0)
        return np.nan_to_num(np.interp(np.arange(n) * (len(src) / n), np.arange(len(src)), src))

class VoteExtractor(F0Extractor):
    """FCPE, CREPE tiny and Praat, each reading the audio, and per frame the pitch two of them agree on
    (:func:`svc_pl.data.f0_vote.vote`; FCPE's value where it is one of the pair): one tracker's octave error is
    outvoted. CREPE, the costly one, reads only the frames where FCPE and Praat leave the vote open (one of them
    voiced and no agreement); elsewhere its reading could not change the result."""

    name = "vote"

    def __init__(self, device=None, **common):
        super().__init__(**common)
        self.members = [FCPEExtractor(**common, device=device, threshold=0.006),
                        CrepeExtractor(**common, device=device, threshold=0.05, model="tiny"),
                        PMExtractor(**common, threshold=0.6)]

    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        from svc_pl.data.f0_vote import agree, vote

        fcpe, crepe, pm = self.members
        a = fcpe.compute(audio, n_frames=n).raw
        c = pm.compute(audio, n_frames=n).raw
        open_ = ((a > 0) | (c > 0)) & ~agree(a, c)
        b = crepe.compute(audio, n_frames=n, frames=open_).raw
        return vote([a, b, c])
