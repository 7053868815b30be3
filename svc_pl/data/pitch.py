"""F0 extractors behind one interface: pm (Praat), dio and harvest (WORLD), crepe (torchcrepe),
fcpe (torchfcpe) and rmvpe (user-supplied weights), as so-vits-svc's ``F0Predictor`` classes.

Every extractor takes mono float audio at ``sample_rate`` and returns exactly ``n_frames`` frames
at ``hop_length`` (default ``len(audio) // hop_length``, the spectrogram frame count), clamped to
``f0_min..f0_max``, with unvoiced frames interpolated and a voiced flag, like upstream's
``compute_f0_uv``. Heavy libraries are imported, and models loaded, once per extractor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

LOG = logging.getLogger(__name__)

METHODS = ("pm", "dio", "harvest", "crepe", "fcpe", "rmvpe")


@dataclass(frozen=True)
class PitchTrack:
    """f0: (N,) Hz, unvoiced frames interpolated; voiced: (N,) 1.0/0.0; raw: (N,) Hz, 0 where unvoiced."""

    f0: np.ndarray
    voiced: np.ndarray
    raw: np.ndarray


def interpolate_unvoiced(f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill unvoiced (<= 0) frames by linear interpolation between voiced ones, holding the edge values.

    Returns (interpolated f0 float32, voiced flag float32). All-unvoiced input gives zeros.
    """
    f0 = np.asarray(f0, dtype=np.float64)
    voiced = f0 > 0
    if not voiced.any():
        return np.zeros_like(f0, dtype=np.float32), np.zeros_like(f0, dtype=np.float32)
    idx = np.nonzero(voiced)[0]
    filled = np.interp(np.arange(len(f0)), idx, f0[idx])
    return filled.astype(np.float32), voiced.astype(np.float32)


def _fit_length(f0: np.ndarray, n_frames: int) -> np.ndarray:
    """Resize a frame sequence to n_frames by linear interpolation of voiced values (zeros kept as gaps)."""
    f0 = np.asarray(f0, dtype=np.float64)
    if len(f0) == n_frames:
        return f0
    if len(f0) == 0:
        return np.zeros(n_frames)
    src = f0.copy()
    src[src < 1e-3] = np.nan
    x_new = np.arange(n_frames) * len(src) / n_frames
    out = np.interp(x_new, np.arange(len(src)), src)
    return np.nan_to_num(out)


class F0Extractor:
    """Base class. ``compute(audio, n_frames)`` -> :class:`PitchTrack`."""

    method = "base"

    def __init__(self, sample_rate: int = 44100, hop_length: int = 512, f0_min: float = 50.0,
                 f0_max: float = 1100.0, device=None, model_path: str | None = None, threshold: float | None = None):
        self.sample_rate = int(sample_rate)
        self.hop_length = int(hop_length)
        self.f0_min = float(f0_min)
        self.f0_max = float(f0_max)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model_path = model_path
        self.threshold = threshold

    def _raw(self, audio: np.ndarray, n_frames: int) -> np.ndarray:
        raise NotImplementedError

    def compute(self, audio: np.ndarray, n_frames: int | None = None) -> PitchTrack:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"F0 extraction expects mono (T,) audio, got shape {audio.shape}")
        n = int(n_frames) if n_frames is not None else len(audio) // self.hop_length
        if len(audio) == 0 or n <= 0:
            z = np.zeros(max(n, 0), dtype=np.float32)
            return PitchTrack(z, z.copy(), z.copy())
        raw = _fit_length(self._raw(audio, n), n)
        raw = np.where((raw >= self.f0_min) & (raw <= self.f0_max), raw, 0.0)
        f0, voiced = interpolate_unvoiced(raw)
        return PitchTrack(f0, voiced, raw.astype(np.float32))


class PMExtractor(F0Extractor):
    """Praat autocorrelation pitch (parselmouth), frames aligned as upstream's PMF0Predictor."""

    method = "pm"

    def _raw(self, audio, n):
        import parselmouth

        time_step = self.hop_length / self.sample_rate
        threshold = 0.6 if self.threshold is None else self.threshold
        f0 = parselmouth.Sound(audio.astype(np.float64), self.sample_rate).to_pitch_ac(
            time_step=time_step, voicing_threshold=threshold, pitch_floor=self.f0_min,
            pitch_ceiling=self.f0_max).selected_array["frequency"]
        pad = (n - len(f0) + 1) // 2
        if pad > 0 or n - len(f0) - pad > 0:
            f0 = np.pad(f0, [[max(pad, 0), max(n - len(f0) - pad, 0)]], mode="constant")
        return f0[:n]


class WorldExtractor(F0Extractor):
    """WORLD dio or harvest (pyworld) refined with stonemask."""

    def __init__(self, method: str, **kw):
        super().__init__(**kw)
        self.method = method

    def _raw(self, audio, n):
        import pyworld

        x = audio.astype(np.float64)
        period = 1000 * self.hop_length / self.sample_rate
        fn = pyworld.dio if self.method == "dio" else pyworld.harvest
        f0, t = fn(x, self.sample_rate, f0_floor=self.f0_min, f0_ceil=self.f0_max, frame_period=period)
        f0 = pyworld.stonemask(x, f0, t, self.sample_rate)
        return f0


def _to16k(audio: np.ndarray, sr: int) -> np.ndarray:
    from svc_pl.data.audio import resample

    return resample(audio, sr, 16000)


class CrepeExtractor(F0Extractor):
    """torchcrepe (weights ship with the package), periodicity-thresholded voicing. ``model``: full or tiny."""

    method = "crepe"

    def __init__(self, model: str = "full", **kw):
        super().__init__(**kw)
        self.model = model

    def _raw(self, audio, n):
        import torchcrepe

        x = torch.from_numpy(_to16k(audio, self.sample_rate)).unsqueeze(0).to(self.device)
        hop16 = 160
        f0, pd = torchcrepe.predict(x, 16000, hop16, self.f0_min, self.f0_max, self.model, batch_size=512,
                                    device=self.device, return_periodicity=True)
        pd = torchcrepe.filter.median(pd, 3)
        f0 = torchcrepe.filter.mean(f0, 3)
        threshold = 0.05 if self.threshold is None else self.threshold
        f0 = torch.where(pd < threshold, torch.zeros_like(f0), f0)[0].cpu().numpy()
        return _resample_track(f0, 0.01, self.hop_length / self.sample_rate, n)


class FCPEExtractor(F0Extractor):
    """torchfcpe's bundled model."""

    method = "fcpe"
    _model = None

    def _raw(self, audio, n):
        from torchfcpe import spawn_bundled_infer_model

        import contextlib
        import io

        if self._model is None:
            chatter = io.StringIO()  # torchfcpe prints status lines to stdout: keep them out of CLI output
            with contextlib.redirect_stdout(chatter):
                self._model = spawn_bundled_infer_model(device=str(self.device))
            LOG.debug("torchfcpe: %s", chatter.getvalue().strip())
        x16 = np.clip(_to16k(audio, self.sample_rate), -1.0, 1.0)  # resampling can overshoot full scale a little
        x = torch.from_numpy(x16).float().view(1, -1, 1).to(self.device)
        frames16 = max(1, len(x[0]) // 160)
        threshold = 0.006 if self.threshold is None else self.threshold
        with torch.no_grad():
            f0 = self._model.infer(x, sr=16000, decoder_mode="local_argmax", threshold=threshold,
                                   f0_min=self.f0_min, f0_max=self.f0_max, interp_uv=False,
                                   output_interp_target_length=frames16)
        f0 = f0.view(-1).float().cpu().numpy()
        return _resample_track(f0, 0.01, self.hop_length / self.sample_rate, n)


class RMVPEExtractor(F0Extractor):
    """RMVPE with a user-supplied ``rmvpe.pt`` (``--f0-model``)."""

    method = "rmvpe"
    _model = None

    def _raw(self, audio, n):
        from svc_pl.data.rmvpe import load_rmvpe

        if self._model is None:
            self._model = load_rmvpe(self.model_path, self.device)
        x = torch.from_numpy(_to16k(audio, self.sample_rate)).float().unsqueeze(0).to(self.device)
        threshold = 0.05 if self.threshold is None else self.threshold
        with torch.no_grad():
            f0 = self._model.decode(self._model.salience(x), threshold=threshold)
        f0 = f0.view(-1).float().cpu().numpy()
        return _resample_track(f0, 0.01, self.hop_length / self.sample_rate, n)


def _resample_track(f0: np.ndarray, src_period: float, dst_period: float, n: int) -> np.ndarray:
    """Re-time a track from frames of src_period seconds to n frames of dst_period, keeping gaps (0) as gaps."""
    if len(f0) == 0:
        return np.zeros(n)
    t_src = np.arange(len(f0)) * src_period
    t_dst = np.arange(n) * dst_period
    voiced = (f0 > 0).astype(np.float64)
    vals = np.where(f0 > 0, f0, np.nan)
    idx = np.nonzero(f0 > 0)[0]
    if len(idx) == 0:
        return np.zeros(n)
    filled = np.interp(t_src, t_src[idx], vals[idx])
    out = np.interp(t_dst, t_src, filled)
    keep = np.interp(t_dst, t_src, voiced) > 0.5
    return np.where(keep, out, 0.0)


def get_f0_extractor(method: str, sample_rate: int = 44100, hop_length: int = 512, f0_min: float = 50.0,
                     f0_max: float = 1100.0, device=None, model_path: str | None = None,
                     threshold: float | None = None, crepe_model: str = "full") -> F0Extractor:
    """The extractor for ``method`` (one of :data:`METHODS`); ``crepe_model`` picks torchcrepe's full or tiny net."""
    kw = dict(sample_rate=sample_rate, hop_length=hop_length, f0_min=f0_min, f0_max=f0_max, device=device,
              model_path=model_path, threshold=threshold)
    if method == "pm":
        return PMExtractor(**kw)
    if method in ("dio", "harvest"):
        return WorldExtractor(method, **kw)
    if method == "crepe":
        return CrepeExtractor(model=crepe_model, **kw)
    if method == "fcpe":
        return FCPEExtractor(**kw)
    if method == "rmvpe":
        return RMVPEExtractor(**kw)
    raise ValueError(f"unknown F0 method {method!r}; choose one of {', '.join(METHODS)}")
