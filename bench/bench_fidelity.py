"""How far the fast paths move the audio: bf16 and windowed decoding against plain fp32.

Converts the same speech with the 44.1 kHz 4.1 default model (random weights, as ``bench_infer.py``) and
with the so-vits-svc parity fixture's model, and compares each variant with the fp32, whole-clip result:

- SNR (dB): fp32 energy over the energy of the difference, over the whole file.
- log-mel distance (dB): mean absolute difference of 80-band log-mel spectra (a spectral distance that
  ignores phase), on frames where the fp32 output is above -60 dBFS.
- F0 (cents): median absolute pitch difference (Parselmouth, frames voiced in both outputs).

The yardstick is the variation users already accept as "the same conversion": the fp32 result with
another seed (the prior is sampled with ``noise_scale`` 0.4). A fast path whose distance is well below
that one changes nothing a listener could attribute to it.

    python bench/bench_fidelity.py --seconds 10 --json bench/results/fidelity.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import _common as C
import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "sovits41-small"


def log_mel_db(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=80, power=2.0)
    return 10 * np.log10(np.maximum(mel, 1e-10))


def f0_track(y: np.ndarray, sr: int) -> np.ndarray:
    import parselmouth

    pitch = parselmouth.Sound(y.astype(np.float64), sr).to_pitch_ac(time_step=0.01, pitch_floor=60, pitch_ceiling=1000)
    return pitch.selected_array["frequency"]


def compare(ref: np.ndarray, other: np.ndarray, sr: int) -> dict:
    n = min(len(ref), len(other))
    ref, other = ref[:n], other[:n]
    err = float(np.sum((ref - other) ** 2))
    snr = 10 * np.log10(float(np.sum(ref**2)) / err) if err > 0 else float("inf")
    a, b = log_mel_db(ref, sr), log_mel_db(other, sr)
    loud = a.max(axis=0) > a.max() - 60
    mel_db = float(np.mean(np.abs(a[:, loud] - b[:, loud])))
    fa, fb = f0_track(ref, sr), f0_track(other, sr)
    m = min(len(fa), len(fb))
    both = (fa[:m] > 0) & (fb[:m] > 0)
    cents = float(np.median(np.abs(1200 * np.log2(fa[:m][both] / fb[:m][both])))) if both.any() else float("nan")
    return {"snr_db": snr, "log_mel_db": mel_db, "f0_cents": cents, "f0_frames": int(both.sum())}


def run_model(name: str, g_path: Path, c_path: Path, y: np.ndarray, sr: int, content_dim: int | None) -> list[dict]:
    import torch

    from svc_pl.data.content import random_content_encoder
    from svc_pl.infer.converter import Converter, ConvertOptions
    from svc_pl.infer.loading import load_voice_model

    vm = load_voice_model(g_path, c_path)
    if content_dim is None:
        encoder = random_content_encoder(vm.content_encoder)
    else:  # the fixture's model takes 48-dim units: a small projection of a random encoder's output
        base = random_content_encoder("vec768l12")
        proj = torch.nn.Linear(768, content_dim, bias=False)
        torch.nn.init.normal_(proj.weight, std=768 ** -0.5, generator=torch.Generator().manual_seed(0))
        encoder = _Projected(base, proj)
    conv = Converter(vm, encoder)
    msr = vm.sampling_rate
    base = dict(speaker=0, noise_scale=0.4, f0_method="pm")
    variants = {
        "fp32, whole clips (reference point)": ConvertOptions(**base, precision="fp32", decode_window=0),
        "fp32, another seed (the yardstick)": ConvertOptions(**base, precision="fp32", decode_window=0, seed=1),
        "fp32, decode window 256": ConvertOptions(**base, precision="fp32", decode_window=256),
        "bf16, decode window 256": ConvertOptions(**base, precision="bf16", decode_window=256),
    }
    outs = {k: conv.convert(y, sr, o) for k, o in variants.items()}
    ref = outs["fp32, whole clips (reference point)"]
    rows = []
    for k, out in outs.items():
        if k.startswith("fp32, whole"):
            continue
        rows.append({"model": name, "variant": k, **compare(ref, out, msr)})
    return rows


class _Projected:
    def __init__(self, encoder, proj):
        self.encoder, self.proj = encoder, proj

    def to(self, device):
        self.encoder.to(device)
        self.proj.to(device)
        return self

    def eval(self):
        self.encoder.eval()
        return self

    def __call__(self, wav):
        units = self.encoder(wav)  # (1, 768, T)
        return self.proj(units.transpose(1, 2)).transpose(1, 2)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fixture", default=str(FIXTURE), help="so-vits-svc parity fixture folder (G_0.pth, config.json)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    C.setup_torch()
    y, kind = C.test_speech(args.seconds, 44100)
    rows = []
    with tempfile.TemporaryDirectory(prefix="svc_bench_fidelity_") as tmp:
        g, c = C.make_default_model(Path(tmp) / "model")
        rows += run_model("4.1 default 44k (random)", g, c, y, 44100, None)
    fixture = Path(args.fixture)
    if (fixture / "G_0.pth").is_file():
        import json

        dim = json.loads((fixture / "config.json").read_text())["model"]["ssl_dim"]
        rows += run_model("parity fixture (random, small)", fixture / "G_0.pth", fixture / "config.json", y, 44100,
                          dim)
    else:
        print(f"{fixture}: no fixture, skipped", file=sys.stderr)
    C.print_table(["model", "variant vs fp32 whole clips", "SNR dB", "log-mel dB", "F0 cents", "F0 frames"],
                  [[r["model"], r["variant"], r["snr_db"], r["log_mel_db"], r["f0_cents"], r["f0_frames"]]
                   for r in rows], f"Fidelity on {args.seconds:g} s of {kind}")
    C.write_json(args.json, {"rows": rows, "input": kind, "env": C.environment(), "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
