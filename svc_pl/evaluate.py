"""Scoring a conversion: does the output follow the (transposed) source melody, and whose voice is it?

F0 agreement is measured on frames voiced in both the transposed source and the converted audio:
median / RMS / mean error in cents, voicing agreement and the gross-error rate (|error| > 50 cents).
Speaker similarity (optional extra ``svc_pl[speaker]``) is the cosine similarity of resemblyzer
speaker embeddings, whose weights ship in that package.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from svc_pl.errors import UserFacingError

LOG = logging.getLogger(__name__)
SPEAKER_EXTRA_HINT = 'speaker similarity needs resemblyzer: pip install "svc_pl[speaker]"'
ANALYSIS_SR = 16000
ANALYSIS_HOP = 160  # 10 ms frames


@dataclass
class F0Agreement:
    """F0 agreement figures plus the aligned curves they were computed from.

    Cents are ``1200 * log2(converted / (source * 2**(transpose/12)))`` on frames voiced in both
    (positive = converted is sharp). ``times``, ``target_f0``, ``converted_f0``: (N,) on the common
    10 ms frame grid; the F0 curves are in Hz with NaN where that track is unvoiced.
    """

    f0_median_cents: float  # median |error|
    f0_rms_cents: float
    f0_mean_cents: float  # signed
    vuv_agreement: float  # fraction of all N frames whose voicing agrees
    f0_gross_error_rate: float  # fraction of both-voiced frames with |error| > 50 cents
    n_voiced_frames: int  # frames voiced in both
    method: str
    transpose: float
    times: np.ndarray | None = field(repr=False, default=None)
    target_f0: np.ndarray | None = field(repr=False, default=None)  # transposed source, Hz, NaN where unvoiced
    converted_f0: np.ndarray | None = field(repr=False, default=None)

    def to_dict(self) -> dict:
        """The scalar figures (no curves), ready for JSON."""
        d = asdict(self)
        for k in ("times", "target_f0", "converted_f0"):
            d.pop(k)
        return d


def evaluate_f0(source: np.ndarray, converted: np.ndarray, sr_source: int, sr_converted: int,
                transpose: float = 0.0, method: str = "fcpe", device=None,
                model_path: str | None = None) -> F0Agreement:
    """F0 agreement of ``converted`` with ``source`` shifted by ``transpose`` semitones.

    Both signals are resampled to 16 kHz and tracked with the same extractor (10 ms hop); the raw,
    un-interpolated tracks are cut to the shorter length before comparing.

    Args:
        source, converted: mono float arrays, shape (T,), at ``sr_source`` / ``sr_converted``.
        method: F0 extractor (see ``svc_pl.data.pitch.METHODS``); ``model_path`` is rmvpe.pt for rmvpe.

    Returns:
        :class:`F0Agreement`; cent figures are NaN when no frame is voiced in both.
    """
    from svc_pl.data.audio import resample
    from svc_pl.data.pitch import get_f0_extractor

    extractor = get_f0_extractor(method, ANALYSIS_SR, ANALYSIS_HOP, device=device, model_path=model_path)

    def track(audio, sr):  # -> (N,) raw Hz, (N,) bool voiced
        t = extractor.compute(resample(np.asarray(audio, dtype=np.float32), sr, ANALYSIS_SR))
        return t.raw.astype(np.float64), t.voiced > 0

    src_f0, src_v = track(source, sr_source)
    out_f0, out_v = track(converted, sr_converted)
    if abs(len(src_f0) - len(out_f0)) > 50:
        LOG.warning("source and converted differ by %.2f s in length; comparing the first %.2f s",
                    abs(len(src_f0) - len(out_f0)) * ANALYSIS_HOP / ANALYSIS_SR,
                    min(len(src_f0), len(out_f0)) * ANALYSIS_HOP / ANALYSIS_SR)
    n = min(len(src_f0), len(out_f0))
    src_f0, src_v, out_f0, out_v = src_f0[:n], src_v[:n], out_f0[:n], out_v[:n]
    target = src_f0 * 2 ** (transpose / 12)
    both = src_v & out_v
    if both.any():
        cents = 1200 * np.log2(out_f0[both] / target[both])
        median, rms, mean = float(np.median(np.abs(cents))), float(np.sqrt(np.mean(cents**2))), float(np.mean(cents))
        gross = float(np.mean(np.abs(cents) > 50))
    else:
        LOG.warning("no frame is voiced in both source and converted (%s): F0 errors are undefined", method)
        median = rms = mean = gross = float("nan")
    return F0Agreement(
        f0_median_cents=median, f0_rms_cents=rms, f0_mean_cents=mean,
        vuv_agreement=float(np.mean(src_v == out_v)) if n else float("nan"), f0_gross_error_rate=gross,
        n_voiced_frames=int(both.sum()), method=method, transpose=float(transpose),
        times=np.arange(n) * ANALYSIS_HOP / ANALYSIS_SR, target_f0=np.where(src_v, target, np.nan),
        converted_f0=np.where(out_v, out_f0, np.nan))


def require_speaker_extra() -> None:
    """Raise a :class:`UserFacingError` with the install hint unless resemblyzer can be imported."""
    try:
        found = importlib.util.find_spec("resemblyzer") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules entry set to None
        found = False
    if not found:
        raise UserFacingError(SPEAKER_EXTRA_HINT)


def speaker_similarity(converted: np.ndarray, sr_converted: int, reference: np.ndarray, sr_reference: int,
                       source: np.ndarray | None = None, sr_source: int | None = None,
                       device=None) -> dict[str, float]:
    """Cosine similarity of resemblyzer speaker embeddings (mono (T,) arrays at their own rates).

    Returns:
        ``similarity_to_target`` (converted vs reference) and, with ``source``, ``similarity_to_source``.

    Raises:
        UserFacingError: resemblyzer (extra ``svc_pl[speaker]``) is not installed.
    """
    try:
        from resemblyzer import VoiceEncoder, preprocess_wav
    except ImportError:
        raise UserFacingError(SPEAKER_EXTRA_HINT) from None
    encoder = VoiceEncoder(device=str(device or "cpu"), verbose=False)

    def embed(y, sr):  # -> (256,) unit-norm embedding
        return encoder.embed_utterance(preprocess_wav(np.asarray(y, dtype=np.float32), source_sr=sr))

    conv = embed(converted, sr_converted)
    out = {"similarity_to_target": float(np.dot(conv, embed(reference, sr_reference)))}
    if source is not None:
        out["similarity_to_source"] = float(np.dot(conv, embed(source, sr_source)))
    return out


def plot_f0(result: F0Agreement, png: str, title: str = "") -> None:
    """PNG of the transposed source F0 and the converted F0 (Hz, log axis), written atomically."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    fig = Figure(figsize=(11, 3.5))
    ax = fig.subplots()
    ax.plot(result.times, result.target_f0, "--", lw=1.2, label=f"source F0 {result.transpose:+g} st")
    ax.plot(result.times, result.converted_f0, lw=1.2, label="converted F0")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))  # plain "200", not "2x10^2"
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.set_xlabel("seconds")
    ax.set_ylabel("Hz")
    ax.set_title(title or f"F0 agreement: median {result.f0_median_cents:.1f} cents, "
                          f"RMS {result.f0_rms_cents:.1f} cents")
    ax.legend(loc="upper right")
    fig.tight_layout()
    save_figure(fig, png)


def save_figure(fig, png) -> None:
    """Save a matplotlib figure (a ``matplotlib.figure.Figure``) as PNG, atomically."""
    from svc_pl.io import atomic_path

    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
