"""``svc-pl demo``: the whole job on a CPU with nothing downloaded.

1. data: two voices synthesised by espeak-ng (speech and a sung "la" melody) in OUT/raw/<voice>/;
2. preprocess: the real pipeline, with a ContentVec-shaped encoder of FIXED RANDOM weights (no
   pretrained encoder can be shipped or downloaded here: real users pass ContentVec weights);
3. fit: the tiny config with trainer.fit, TensorBoard logs in OUT/runs;
4. convert: a phrase of voice A to voice B, transposed, through ``svc-pl infer``;
5. evaluate: F0 agreement figures and a PNG of F0 curves over the two mel spectrograms.

Every step is skipped or resumed when its output is already there.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

LOG = logging.getLogger(__name__)

VOICES = {  # name: (espeak-ng voice, base pitch 0-99)
    "alto": ("en+f3", 60),
    "baritone": ("en+m3", 25),
}
PHRASES = [
    "The quick brown fox jumps over the lazy dog.",
    "Singing voice conversion keeps the melody and the words.",
    "She sells sea shells by the sea shore every summer.",
    "A journey of a thousand miles begins with a single step.",
    "Bright stars shine over the quiet harbour tonight.",
    "Every morning the river sings a different song.",
    "Please call Stella and ask her to bring these things.",
    "We will find a way through the rain and the wind.",
]
MELODY = [0, 2, 4, 5, 7, 5, 4, 2, 0, 4, 7, 12, 7, 4, 0]  # semitones of the sung "la" line


def _espeak(out: Path, text: str, voice: str, pitch: int, speed: int = 150) -> Path:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: run `bash scripts/setup.sh` or `apt-get install espeak-ng`")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(out), text], check=True,
                   capture_output=True)
    return out


def _sung_line(out: Path, voice: str, base_pitch: int) -> Path:
    """A melody: one 'la' per note, each synthesised at its own espeak pitch, joined with short gaps."""
    import soundfile as sf

    parts, sr = [], 22050
    tmp = out.with_suffix(".notes")
    tmp.mkdir(parents=True, exist_ok=True)
    for i, semi in enumerate(MELODY):
        p = int(np.clip(base_pitch + semi * 3, 0, 99))
        note = _espeak(tmp / f"{i}.wav", "laa", voice, p, speed=90)
        y, sr = sf.read(note, dtype="float32")
        parts += [y, np.zeros(int(0.05 * sr), np.float32)]
    sf.write(out, np.concatenate(parts), sr)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def make_voices(raw: Path, n_phrases: int = 8) -> None:
    for name, (voice, pitch) in VOICES.items():
        d = raw / name
        for i, text in enumerate(PHRASES[:n_phrases]):
            if not (d / f"speech_{i}.wav").is_file():
                _espeak(d / f"speech_{i}.wav", text, voice, pitch)
        for k in range(2):
            if not (d / f"sung_{k}.wav").is_file():
                _sung_line(d / f"sung_{k}.wav", voice, pitch + 5 * k)


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def run_demo(out: str | Path, max_steps: int = 600, transpose: int = 4, workers: int = 2,
             n_phrases: int = 8, progress: bool = True) -> dict:
    from svc_pl.cli import main as cli_main

    out = Path(out)
    t_start = time.time()
    _step("1/5 data: two voices from espeak-ng (speech + a sung melody)")
    make_voices(out / "raw", n_phrases=n_phrases)
    _step("2/5 preprocess (real pipeline; content encoder with FIXED RANDOM weights, see README)")
    print("note: no pretrained ContentVec can be shipped or downloaded here, so the demo's content units come "
          "from a ContentVec-shaped encoder with fixed random weights. Real models: pass "
          "--content-encoder checkpoint_best_legacy_500.pt (or a Hugging Face ContentVec folder).", flush=True)
    data = out / "data"
    args = ["preprocess", str(out / "raw"), str(data), "--random-encoder", "--sampling-rate", "16000",
            "--hop-length", "320", "--filter-length", "1024", "--f0", "pm", "--workers", str(workers),
            "--val-per-speaker", "1", "--max-clip-seconds", "8"]
    if not progress:
        args.append("--no-progress")
    if cli_main(args) != 0:
        raise RuntimeError("preprocessing produced nothing")
    _step(f"3/5 fit the tiny config for {max_steps} optimizer steps (TensorBoard: tensorboard --logdir {out}/runs)")
    ckpt_dir = out / "runs"
    last = sorted(ckpt_dir.rglob("last.ckpt"))
    fit = ["fit", "--config", str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"),
           "--data.dataset_dir", str(data), "--trainer.default_root_dir", str(ckpt_dir),
           "--trainer.max_steps", str(max_steps), "--trainer.logger.class_path",
           "pytorch_lightning.loggers.TensorBoardLogger", "--trainer.logger.init_args.save_dir", str(ckpt_dir),
           "--trainer.logger.init_args.name", "demo", "--trainer.logger.init_args.version", "0",
           "--trainer.enable_progress_bar", str(progress).lower()]
    if last:
        fit += ["--ckpt_path", str(last[-1])]
        print(f"resuming from {last[-1]}")
    done_steps = 0
    if last:
        import torch

        done_steps = int(torch.load(last[-1], map_location="cpu", weights_only=False).get("global_step", 0))
    if done_steps < max_steps and cli_main(fit) != 0:
        raise RuntimeError("training failed")
    ckpt = sorted(ckpt_dir.rglob("last.ckpt"))[-1]
    _step(f"4/5 convert a phrase of 'baritone' to 'alto', transposed by {transpose:+d} semitones")
    src = out / "raw" / "baritone" / "speech_0.wav"
    conv_dir = out / "converted"
    code = cli_main(["infer", str(src), "-o", str(conv_dir), "-m", str(ckpt), "-s", "alto", "-t", str(transpose),
                     "--random-encoder", "--no-progress"])
    if code != 0:
        raise RuntimeError("conversion failed")
    converted = conv_dir / src.name
    _step("5/5 evaluate")
    from svc_pl.compat.config import write_json_atomic
    from svc_pl.evaluate import evaluate_f0

    src_audio, src_sr = _load(src)
    conv_audio, conv_sr = _load(converted)
    agreement = evaluate_f0(src_audio, conv_audio, src_sr, conv_sr, transpose=transpose, method="pm")
    report = agreement.to_dict() if hasattr(agreement, "to_dict") else dict(vars(agreement))
    report = {k: v for k, v in report.items() if not hasattr(v, "shape")}
    report.update(source=str(src), converted=str(converted), transpose=transpose,
                  note="content encoder with fixed random weights (demo); see README for real models")
    plot_conversion(src_audio, src_sr, conv_audio, conv_sr, transpose, out / "conversion.png")
    report_path = out / "evaluation.json"
    write_json_atomic(report_path, report)
    print(json.dumps({k: v for k, v in report.items() if isinstance(v, int | float | str)}, indent=2))
    print(f"\nconverted audio: {converted}\nplot: {out / 'conversion.png'}\nfigures: {report_path}\n"
          f"TensorBoard: tensorboard --logdir {ckpt_dir}\ntotal {time.time() - t_start:.0f} s", flush=True)
    return report


def _load(path: Path):
    from svc_pl.data.audio import load_audio

    return load_audio(path)


def plot_conversion(src: np.ndarray, src_sr: int, conv: np.ndarray, conv_sr: int, transpose: float,
                    png: Path, hop_seconds: float = 0.01) -> Path:
    """Mel spectrograms of source and conversion with F0 curves on top: the transposed source F0
    (dashed, on both) and the converted F0 (solid, on the conversion). Written atomically."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from svc_pl.data.pitch import get_f0_extractor
    from svc_pl.evaluate import save_figure

    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
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
        track = get_f0_extractor("pm", sr, hop).compute(y)
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
    return png




def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", nargs="?", default="demo_out", help="where everything goes (default demo_out)")
    p.add_argument("--max-steps", type=int, default=600, help="optimizer steps of training (two per batch)")
    p.add_argument("--transpose", type=int, default=4, help="semitones for the conversion")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--phrases", type=int, default=8, help="spoken phrases per voice (1-8)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    run_demo(args.out_dir, max_steps=args.max_steps, transpose=args.transpose, workers=args.workers,
             n_phrases=args.phrases, progress=not args.no_progress)
    return 0
