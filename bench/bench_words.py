#!/usr/bin/env python
"""Where the words are lost: Whisper tiny.en word error rates of a base's resynthesis, stage by stage.

For each voice, its spoken sentences (the corpus's own words) are scored as:

* ``original``: the voice's own recording (how well Whisper reads the voice at all);
* ``world20``: a WORLD analysis-resynthesis with 20 ms frames, the base's frame rate (is a harmonic-plus-noise
  model at 20 ms enough for the words? an oracle of the DDSP decoder's model class); ``world5``: the same at 5 ms
  frames (what the 20 ms frame rate itself costs; ``--world-ms`` picks the frame periods);
* ``resynthesis``: ``svc-pl infer`` with the base itself, the voice's own speaker when the base knows it
  (speaker 0 for held-out voices), its own F0 (FCPE): units -> prior -> DDSP decoder, no conversion.

Train-set sentences (``TRAIN_SENTENCES``) and held-out ones (``EVAL_SENTENCES``) are reported apart: a gap between
them is the base not generalising to words it never heard. Each file's WER counts at most 1.

    python bench/bench_words.py --out /tmp/words                        # the shipped base
    python bench/bench_words.py --out /tmp/words_old --base old.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def world_resynthesis(y: np.ndarray, sr: int, frame_ms: float) -> np.ndarray:
    import pyworld as pw

    y = y.astype(np.float64)
    f0, t = pw.harvest(y, sr, frame_period=frame_ms)
    sp, ap = pw.cheaptrick(y, f0, t, sr), pw.d4c(y, f0, t, sr)
    return pw.synthesize(f0, sp, ap, sr, frame_period=frame_ms).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_words_out"))
    ap.add_argument("--base", default="tiny-base", help="a base name or .safetensors file")
    ap.add_argument("--voices", default="fest_slt,es_m1,es_f2,joe,tenor",
                    help="comma-separated corpus voices (base voices resynthesise as themselves)")
    ap.add_argument("--train-sentences", type=int, default=4, help="how many of the base's training sentences")
    ap.add_argument("--world-ms", default="20,5", help="comma-separated WORLD frame periods (ms) to score")
    a = ap.parse_args()
    try:
        world_ms = [float(x) for x in a.world_ms.split(",")]
    except ValueError:
        ap.error(f"--world-ms {a.world_ms!r}: give frame periods in ms, e.g. 20,5")
    worlds = [f"world{ms:g}" for ms in world_ms]
    stages = ("original", *worlds, "resynthesis")

    from svc_pl.cli import main as cli
    from svc_pl.corpus import EVAL_SENTENCES, TRAIN_SENTENCES, VOICES, render_voice, text_of
    from svc_pl.data.audio import load_audio
    from svc_pl.evaluate import Transcriber, word_error_rate
    from svc_pl.pretrained import load_base, pretrained_path, write_base_ckpt

    transcriber = Transcriber()
    a.out.mkdir(parents=True, exist_ok=True)
    ckpt = a.out / "base.ckpt"
    write_base_ckpt(ckpt, a.base)
    from svc_pl.data.whisper_weights import builtin_for_unit_dim

    info = load_base(pretrained_path(a.base) or Path(a.base))[1]["dataset_info"]
    speakers = info["speakers"]
    encoder = builtin_for_unit_dim(info.get("unit_dim")) or "whisper-tiny.en"  # the units the base was made on
    rows = []
    for name in a.voices.split(","):
        voice = VOICES[name]
        sets = {"train": TRAIN_SENTENCES[:a.train_sentences], "held_out": EVAL_SENTENCES}
        for split, sentences in sets.items():
            files = render_voice(a.out / "raw" / split, voice, sentences, [])
            out_dir = a.out / "resynthesis" / split / name
            if cli(["infer", *map(str, files), "-o", str(out_dir), "-m", str(ckpt), "-s",
                    str(speakers.get(name, 0)), "--content-encoder", encoder, "--f0", "fcpe",
                    "--no-progress", "--precision", "fp32"]) != 0:
                raise SystemExit(f"resynthesis of {name} failed")
            for f in files:
                y, _ = load_audio(f, 16000)
                z, _ = load_audio(out_dir / f.name, 16000)
                words = text_of(f)
                row = {"voice": name, "in_base": name in speakers, "split": split, "file": f.name}
                audios = (y, *(world_resynthesis(y, 16000, ms) for ms in world_ms), z)
                for stage, audio in zip(stages, audios):
                    text = transcriber(audio, 16000)
                    row[stage] = min(1.0, word_error_rate(words, text))
                    row[f"{stage}_text"] = text
                rows.append(row)
                print(f"{name:9s} {split:8s} {f.name:14s} " + "  ".join(f"{k} {row[k]:.2f}" for k in stages)
                      + f"  | {row['resynthesis_text']}", flush=True)
    print("\n| voice | in base | split | WER original | " + " | ".join(f"WER WORLD {ms:g} ms" for ms in world_ms)
          + " | WER base resynthesis |")
    print("| --- | --- | --- | --- |" + " --- |" * len(world_ms) + " --- |")
    summary = []
    for name in a.voices.split(","):
        for split in ("train", "held_out"):
            r = [x for x in rows if x["voice"] == name and x["split"] == split]
            m = {k: float(np.mean([x[k] for x in r])) for k in stages}
            summary.append({"voice": name, "split": split, **m})
            print(f"| {name} | {'yes' if r[0]['in_base'] else 'no'} | {split} | "
                  + " | ".join(f"{m[k]:.2f}" for k in stages) + " |")
    for split in ("train", "held_out"):
        r = [x for x in rows if x["split"] == split]
        print(f"| all | | {split} | " + " | ".join(f"{np.mean([x[k] for x in r]):.2f}" for k in stages) + " |")
    (a.out / "words.json").write_text(json.dumps({"base": a.base, "summary": summary, "files": rows}, indent=1))
    print(f"\nper file: {a.out / 'words.json'}")


if __name__ == "__main__":
    main()
