#!/usr/bin/env python
"""How much speaker the content units carry: a speaker classifier trained on units.

A small multi-voice corpus (Debian espeak-ng voices of ``svc_pl.corpus.BASE_VOICES``, spoken sentences) is
encoded several ways; a logistic regression (scikit-learn, standardised features) learns which voice each
unit frame belongs to on some sentences and is tested on the others (the split is by sentence, so no test
sentence was heard in training). Only frames with sound are used (frame energy within 40 dB of the clip's
peak). The accuracy is given per frame and per clip (majority vote of its frames); chance is one over the
number of voices. Lower accuracy = less speaker in the units.

Rows:

* ``whisper-tiny.en, whole clip``: units of the clip padded to 30 s, as so-vits-svc makes them;
* ``whisper-tiny.en, windowed``: ``WindowedEncoder`` with the default ``UnitWindow`` (what the base now
  trains and converts with);
* ``whisper-tiny.en, windowed, perturbed``: the same of a speaker-perturbed copy (``svc_pl.data.perturb``:
  formant shift, pitch randomisation, random EQ; one seeded copy per clip), what training now draws;
* ``whisper-base, ...``: the multilingual Whisper base (``--content-encoder whisper-base``), if installed.

    python bench/bench_units.py --json units.json                      # 4 voices x 6 sentences
    python bench/bench_units.py --voices 6 --sentences 8 --test-sentences 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import print_table, setup_torch, write_json  # noqa: E402

# espeak-ng voices of the base corpus, male and female mixed (festival voices render slowly)
DEFAULT_VOICES = ["es_m1", "es_f1", "es_m4", "es_f5", "es_klatt", "es_caribbean", "es_m7", "es_f2"]


def sounding_frames(y: np.ndarray, n: int, hop: int = 320, floor_db: float = -40.0) -> np.ndarray:
    """(n,) bool: unit frames whose energy is within ``floor_db`` of the clip's loudest frame."""
    y = np.pad(y, (0, max(0, n * hop - len(y))))[: n * hop].reshape(n, hop)
    e = 10 * np.log10(np.mean(y.astype(np.float64) ** 2, axis=1) + 1e-12)
    return e > e.max() + floor_db


def median_f0(y: np.ndarray) -> float:
    from svc_pl.data.pitch import get_f0_extractor

    t = get_f0_extractor("pm", 16000, 160).compute(y.astype(np.float32))
    voiced = t.raw[t.voiced > 0]
    return float(np.median(voiced)) if len(voiced) else 0.0


def speaker_accuracy(feats: dict, train: set[int], test: set[int], seed: int = 0) -> dict:
    """feats: {(voice index, sentence): (frames, D) units}; frame and clip accuracy on the test sentences."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def stack(sentences):
        keys = [k for k in feats if k[1] in sentences]
        x = np.concatenate([feats[k] for k in keys])
        y = np.concatenate([np.full(len(feats[k]), k[0]) for k in keys])
        return keys, x, y

    _, x_tr, y_tr = stack(train)
    keys, x_te, y_te = stack(test)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.1, random_state=seed))
    clf.fit(x_tr, y_tr)
    frame_acc = float(np.mean(clf.predict(x_te) == y_te))
    votes = [np.bincount(clf.predict(feats[k]), minlength=len(set(y_tr))).argmax() == k[0] for k in keys]
    return {"frame_accuracy": frame_acc, "clip_accuracy": float(np.mean(votes)), "train_frames": int(len(x_tr)),
            "test_frames": int(len(x_te)), "test_clips": len(keys)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_units_out"), help="where the corpus is rendered")
    ap.add_argument("--voices", type=int, default=4, help=f"how many of {DEFAULT_VOICES}")
    ap.add_argument("--sentences", type=int, default=6, help="sentences per voice (the first N of the corpus)")
    ap.add_argument("--test-sentences", type=int, default=2, help="the last N of them are the test set")
    ap.add_argument("--encoders", nargs="+", default=["whisper-tiny.en", "whisper-base"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the figures to this JSON file")
    a = ap.parse_args()

    torch = setup_torch(a.threads)
    from svc_pl.corpus import VOICES, render_corpus
    from svc_pl.data.audio import load_audio
    from svc_pl.data.perturb import perturb
    from svc_pl.data.unit_window import UnitWindow, WindowedEncoder
    from svc_pl.data.whisper import WhisperWeightsError, load_whisper_encoder

    t0 = time.time()
    voices = [VOICES[v] for v in DEFAULT_VOICES[: a.voices]]
    sentences = list(range(a.sentences))
    test = set(sentences[-a.test_sentences:])
    train = set(sentences) - test
    render_corpus(a.out, voices, sentences, [], workers=1)
    clips = {(vi, s): load_audio(a.out / v.name / f"speech_{s}.wav", 16000)[0] for vi, v in enumerate(voices)
             for s in sentences}
    perturbed = {k: perturb(y.astype(np.float64), 16000, np.random.default_rng(1000 * k[0] + k[1]),
                            median_f0(y)).astype(np.float32) for k, y in clips.items()}

    rows, table = [], []

    def summary(rows: list[dict]) -> dict:
        return {"voices": [v.name for v in voices], "train_sentences": sorted(train), "test_sentences": sorted(test),
                "chance": 1 / len(voices), "frames": "with sound (within 40 dB of the clip's peak)", "rows": rows,
                "seconds": round(time.time() - t0, 1)}

    for name in a.encoders:
        try:
            enc = load_whisper_encoder(name, name=name)
        except WhisperWeightsError as exc:
            print(f"skipping {name}: {str(exc).splitlines()[0]}")
            continue
        windowed = WindowedEncoder(enc, UnitWindow())
        for label, model, audio in ((f"{name}, whole clip", enc, clips), (f"{name}, windowed", windowed, clips),
                                    (f"{name}, windowed, perturbed", windowed, perturbed)):
            t = time.time()
            feats = {}
            with torch.no_grad():
                for k, y in audio.items():
                    u = model(torch.from_numpy(y)[None])[0].T.numpy()  # (frames, D)
                    feats[k] = u[sounding_frames(clips[k], len(u))]
            res = speaker_accuracy(feats, train, test)
            res |= {"row": label, "encoder": name, "dim": int(enc.dim), "encode_seconds": round(time.time() - t, 1)}
            rows.append(res)
            table.append([label, res["frame_accuracy"], res["clip_accuracy"]])
            print(f"{label}: frame {res['frame_accuracy']:.3f}, clip {res['clip_accuracy']:.3f} "
                  f"({res['encode_seconds']} s)", flush=True)
            if a.json:  # after every row: a long run stopped early keeps what it measured
                Path(a.json).parent.mkdir(parents=True, exist_ok=True)
                Path(a.json).write_text(json.dumps(summary(rows), indent=2))
    chance = 1 / len(voices)
    print_table(["units", "speaker acc. (frames)", "speaker acc. (clips)"], table,
                title=f"speaker classifier on units: {len(voices)} voices (chance {chance:.3f}), "
                      f"train sentences {sorted(train)}, test {sorted(test)}")
    write_json(a.json, summary(rows))


if __name__ == "__main__":
    main()
