"""Scoring a conversion: does the output follow the (transposed) source melody, and whose voice is it?

F0 agreement is measured on frames voiced in both the transposed source and the converted audio:
median / RMS / mean error in cents, voicing agreement and the gross-error rate (|error| > 50 cents). A second,
unrelated tracker (Praat's autocorrelation) checks the first: source frames where the two read different pitches
(one of them is an octave off, as FCPE often is on low male voices) cannot be judged and are left out (their
share is reported), and where the expected pitch is above FCPE's range (it reads a 1150 Hz tone as unvoiced or a
subharmonic) the converted audio is read by Praat.
Speaker similarity by two judges (:mod:`svc_pl.speaker_judges`) and intelligibility, transcripts and their word
and character error rates (:mod:`svc_pl.intelligibility`), are scored by their own modules; their names are
importable from here too. The plots of a conversion are here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from svc_pl.intelligibility import (  # noqa: F401  (part of this module's API)
    ASR_EXTRA_HINT,
    Transcriber,
    asr_available,
    char_error_rate,
    intelligibility,
    normalize_text,
    word_error_rate,
)
from svc_pl.speaker_judges import (  # noqa: F401  (part of this module's API)
    JUDGES,
    SPEAKER_EXTRA_HINT,
    ResemblyzerJudge,
    VoiceFilterJudge,
    require_speaker_extra,
    speaker_similarity,
)

LOG = logging.getLogger(__name__)
ANALYSIS_SR = 16000
ANALYSIS_HOP = 160  # 10 ms frames
ANALYSIS_F0_MAX = 2000.0  # Hz: converted audio is often transposed past the extractors' usual 1100 Hz
CHECK_METHOD = "pm"  # the second tracker: Praat's autocorrelation, no network, reads 50-2000 Hz tones exactly
#: Hz above which a method cannot read pitch (measured on harmonic tones: FCPE reads 1100 Hz as 1086, 1150 Hz as
#: unvoiced); frames whose expected F0 is above it are read by the check tracker
METHOD_CEILING = {"fcpe": 1000.0}


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
    n_voiced_frames: int  # frames judged: voiced in both (and, with a check tracker, an agreed source pitch)
    method: str
    transpose: float
    check_method: str | None = None  # the second tracker, None when there was none
    reference_agreement: float = float("nan")  # share of the source's voiced frames where both trackers agree
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
                model_path: str | None = None, check_method: str | None = CHECK_METHOD) -> F0Agreement:
    """F0 agreement of ``converted`` with ``source`` shifted by ``transpose`` semitones.

    Both signals are resampled to 16 kHz and tracked with the same extractor (10 ms hop, 50-2000 Hz); the raw,
    un-interpolated tracks are cut to the shorter length before comparing. With ``check_method`` (Praat by
    default; None or the same method turns it off) both signals are tracked a second time: a source frame is judged
    only where the two trackers agree on it within 50 cents (elsewhere the reference itself is in doubt), and a
    converted frame whose expected F0 lies above ``method``'s range (:data:`METHOD_CEILING`) is read by the check.

    Args:
        source, converted: mono float arrays, shape (T,), at ``sr_source`` / ``sr_converted``.
        method: F0 extractor (see ``svc_pl.data.pitch.METHODS``); ``model_path`` is rmvpe.pt for rmvpe.

    Returns:
        :class:`F0Agreement`; cent figures are NaN when no frame is voiced in both.
    """
    from svc_pl.data.audio import resample
    from svc_pl.data.pitch import get_f0_extractor

    def tracker(name):
        return get_f0_extractor(name, ANALYSIS_SR, ANALYSIS_HOP, device=device, f0_max=ANALYSIS_F0_MAX,
                                model_path=model_path if name == method else None)

    from svc_pl.data.f0_vote import agree

    primary = tracker(method)
    check = tracker(check_method) if check_method not in (None, method) else None
    src, out = (resample(np.asarray(x, dtype=np.float32), sr, ANALYSIS_SR)
                for x, sr in ((source, sr_source), (converted, sr_converted)))

    def read(ex, y):  # -> (N,) raw Hz, 0 where unvoiced
        return ex.compute(y).raw.astype(np.float64)

    src_f0, out_f0 = read(primary, src), read(primary, out)
    if abs(len(src_f0) - len(out_f0)) > 50:
        LOG.warning("source and converted differ by %.2f s in length; comparing the first %.2f s",
                    abs(len(src_f0) - len(out_f0)) * ANALYSIS_HOP / ANALYSIS_SR,
                    min(len(src_f0), len(out_f0)) * ANALYSIS_HOP / ANALYSIS_SR)
    n = min(len(src_f0), len(out_f0))
    src_f0, out_f0 = src_f0[:n], out_f0[:n]
    src_v = src_f0 > 0
    target = src_f0 * 2 ** (transpose / 12)
    judged = src_v
    agreement = float("nan")
    if check is not None:
        judged = agree(src_f0, read(check, src)[:n])
        agreement = float(judged.sum() / max(int(src_v.sum()), 1))
        above = src_v & (target > METHOD_CEILING.get(method, np.inf))
        if above.any():  # the converted audio is read a second time only where the first tracker cannot
            out_f0 = np.where(above, read(check, out)[:n], out_f0)
    out_v = out_f0 > 0
    both = judged & out_v
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
        check_method=check.name if check is not None else None, reference_agreement=agreement,
        times=np.arange(n) * ANALYSIS_HOP / ANALYSIS_SR, target_f0=np.where(src_v, target, np.nan),
        converted_f0=np.where(out_v, out_f0, np.nan))

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


def plot_conversion(src: np.ndarray, src_sr: int, conv: np.ndarray, conv_sr: int, transpose: float,
                    png: str | os.PathLike, hop_seconds: float = 0.01, f0_method: str = "fcpe") -> Path:
    """Mel spectrograms of source and conversion with F0 curves on top: the transposed source F0
    (dashed, on both) and the converted F0 (solid, on the conversion), F0 by ``f0_method``. Written atomically."""
    import librosa
    from matplotlib.figure import Figure

    from svc_pl.data.pitch import get_f0_extractor

    fig = Figure(figsize=(11, 6))
    axes = fig.subplots(2, 1, sharex=True)
    target = None
    for ax, (y, sr, title) in zip(axes, ((src, src_sr, "source (F0 transposed)"), (conv, conv_sr, "converted"))):
        hop = max(1, int(sr * hop_seconds))
        mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=hop, n_mels=128,
                                                                 fmax=min(8000, sr // 2)), ref=np.max)
        times = np.arange(mel.shape[1]) * hop / sr
        mel_f = librosa.mel_frequencies(n_mels=128, fmax=min(8000, sr // 2))
        ax.pcolormesh(times, mel_f, mel, shading="auto", cmap="magma")
        ax.set_yscale("symlog", linthresh=500)
        ax.set_ylim(50, min(8000, sr // 2))
        track = get_f0_extractor(f0_method, sr, hop).compute(y)
        f0 = np.where(track.voiced > 0, track.raw, np.nan)
        t = np.arange(len(f0)) * hop / sr
        if target is None:
            target = (t, f0 * 2 ** (transpose / 12))
        else:
            ax.plot(t, f0, color="cyan", lw=1.5, label="converted F0")
        ax.plot(*target, color="white", lw=1.2, ls="--", label="source F0 transposed")
        ax.set_title(title)
        ax.set_ylabel("Hz")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    save_figure(fig, png)
    return Path(png)
