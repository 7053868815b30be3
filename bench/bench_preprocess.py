"""Preprocessing throughput per stage (seconds of audio processed per second) for 60 s of speech, 44.1 kHz, hop 512.

Stages, each timed on its own (the work ``svc-pl preprocess`` does per file):
- load+resample: read a 48 kHz stereo 16-bit WAV, down-mix, resample to 44.1 kHz;
- units: 44.1 -> 16 kHz resample + base-size random vec768l12 encoder + stretch to the F0 frames, per clip;
- f0/<method>: each F0 extractor per clip (pm, dio, harvest, crepe, fcpe; rmvpe with random weights); crepe
  (full model, minutes per minute of audio on CPU) only on the first clips up to ``--crepe-seconds`` (10).
Clips are what our slicer makes of the file (pieces of at most 15 s), the same boundaries on both sides.
Extractor/encoder construction plus one 1 s warm-up call is timed separately ("init"); the load is timed on a
second read (the first pays lazy imports).

reference (``--reference``): upstream's functions for the same stages: ``librosa.load(sr=None)`` +
``librosa.resample`` (resample.py), ``librosa.resample`` to 16 kHz + ``.encoder`` + ``repeat_expand_2d``
(preprocess_hubert_f0.py; our encoder behind upstream's interface), ``utils.get_f0_predictor(...).compute_f0_uv``.
Upstream's fcpe needs ``pretrain/fcpe.pt`` (a config-carrying checkpoint we do not have): not measured.
RMVPE: both load the same randomly initialised ``rmvpe.pt`` (upstream's E2E0 layout).

    python bench/bench_preprocess.py --reference /tmp/sovits_ref --json bench/results/preprocess.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import _common as C
import numpy as np

SCRIPT = Path(__file__).resolve()
SR, HOP = 44100, 512
METHODS = ["pm", "dio", "harvest", "crepe", "fcpe", "rmvpe"]


def make_input(path: Path, seconds: float) -> Path:
    """48 kHz stereo 16-bit WAV of espeak-ng speech (right channel: 0.8x, 1 ms later)."""
    import soundfile as sf

    from svc_pl.data.audio import resample

    y, _ = C.test_speech(seconds, SR, seed=2)
    y48 = resample(y, SR, 48000)
    right = 0.8 * np.concatenate([np.zeros(48, np.float32), y48[:-48]])
    sf.write(path, np.stack([y48, right], axis=1), 48000, subtype="PCM_16")
    return path


def make_rmvpe_weights(directory: Path) -> Path:
    """Random RMVPE weights as ``{"model": state_dict}`` (our module names = upstream's, minus its timbre filter)."""
    import torch

    torch.manual_seed(0)
    path = directory / "pretrain" / "rmvpe.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    from svc_pl.data.rmvpe import RMVPE

    torch.save({"model": RMVPE().state_dict()}, path)
    return path


def _clips(y: np.ndarray) -> list[tuple[int, int]]:
    from svc_pl.data.preprocess import split_long
    from svc_pl.data.slicer import Slicer

    chunks = Slicer(SR, threshold=-40, min_length=5000, min_interval=300, hop_size=20, max_sil_kept=500).slice(y)
    return [p for c in chunks if not c.silent for p in split_long(c.start, c.end, int(15 * SR))]


def _time_stage(fn, clips, y, limit: float | None = None) -> dict:
    """Run ``fn(clip, n_frames)`` over the clips (stopping once ``limit`` s of audio are done)."""
    t0, done = time.perf_counter(), 0
    for a, b in clips:
        n = (b - a) // HOP
        fn(y[a:a + n * HOP], n)
        done += n * HOP
        if limit is not None and done >= limit * SR:
            break
    return {"seconds": time.perf_counter() - t0, "audio_seconds": done / SR}


# ================================================================================================ workers
def worker_ours(args) -> dict:
    torch = C.setup_torch()
    from svc_pl.data.audio import load_audio
    from svc_pl.data.pitch import get_f0_extractor
    from svc_pl.data.preprocess import PreprocessOptions, UnitComputer

    stages = {}
    load_audio(args.input, target_sr=SR)  # warm-up: lazy imports, file cache
    t0 = time.perf_counter()
    y, sr = load_audio(args.input, target_sr=SR)
    stages["load+resample"] = {"seconds": time.perf_counter() - t0}
    clips = _clips(y)
    warm = y[: SR]

    t0 = time.perf_counter()
    units = UnitComputer(PreprocessOptions(random_encoder=True))
    init = time.perf_counter() - t0
    units(warm, len(warm) // HOP)
    stages["units"] = {**_time_stage(units, clips, y), "init": init}
    for method in args.methods:
        try:
            t0 = time.perf_counter()
            ext = get_f0_extractor(method, sample_rate=SR, hop_length=HOP, device="cpu",
                                   model_path=args.rmvpe if method == "rmvpe" else None)
            ext.compute(warm, len(warm) // HOP)
            init = time.perf_counter() - t0
            stages[f"f0/{method}"] = {**_time_stage(lambda a, n, ext=ext: ext.compute(a, n_frames=n), clips, y,
                                                    _limit(args, method)), "init": init}
        except Exception as err:  # report and go on: one missing extractor must not hide the others
            stages[f"f0/{method}"] = {"error": f"{type(err).__name__}: {err}"}
    del torch
    return _result("ours", args, y, clips, stages)


def worker_reference(args) -> dict:
    ref = C.import_reference(args.reference)
    torch = C.setup_torch()
    import librosa
    import utils

    from svc_pl.data.content import random_content_encoder

    stages = {}
    librosa.resample(librosa.load(args.input, sr=None)[0], orig_sr=48000, target_sr=SR)  # warm-up, as ours
    t0 = time.perf_counter()
    y48, sr = librosa.load(args.input, sr=None)  # resample.py load_wav (mono)
    y = librosa.resample(y48, orig_sr=sr, target_sr=SR)  # resample.py resample_wav
    stages["load+resample"] = {"seconds": time.perf_counter() - t0}
    clips = _clips(y)
    warm = y[: SR]

    t0 = time.perf_counter()
    hmodel = C.UpstreamEncoderAdapter(random_content_encoder("vec768l12"))
    C.REFERENCE_STUBS.append("speech encoder: svc_pl random vec768l12 behind upstream's .encoder(wav16k) "
                             "(fairseq not installable)")
    init = time.perf_counter() - t0

    def units(wav, n):  # preprocess_hubert_f0.process_one
        wav16k = librosa.resample(wav, orig_sr=SR, target_sr=16000)
        wav16k = torch.from_numpy(wav16k)
        c = hmodel.encoder(wav16k)
        return utils.repeat_expand_2d(c.squeeze(0), n)

    units(warm, len(warm) // HOP)
    stages["units"] = {**_time_stage(units, clips, y), "init": init}
    rmvpe_root = _upstream_rmvpe_weights(torch, Path(args.rmvpe))
    for method in args.methods:
        if method == "fcpe":
            stages["f0/fcpe"] = {"error": "not measured: upstream's FCPE needs pretrain/fcpe.pt (not available)"}
            continue
        try:
            cwd = os.getcwd()
            t0 = time.perf_counter()
            os.chdir(rmvpe_root)  # upstream reads pretrain/rmvpe.pt relative to the cwd
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    pred = utils.get_f0_predictor(method, hop_length=HOP, sampling_rate=SR, device="cpu",
                                                  threshold=0.05)
            finally:
                os.chdir(cwd)
            pred.compute_f0_uv(warm)
            init = time.perf_counter() - t0
            stages[f"f0/{method}"] = {**_time_stage(lambda a, n, pred=pred: pred.compute_f0_uv(a, p_len=n), clips, y,
                                                    _limit(args, method)), "init": init}
        except Exception as err:
            stages[f"f0/{method}"] = {"error": f"{type(err).__name__}: {err}"}
    result = _result("reference", args, y, clips, stages)
    result["reference"] = ref
    result["stubs"] = list(C.REFERENCE_STUBS)
    return result


def _upstream_rmvpe_weights(torch, ours: Path) -> Path:
    """The same random RMVPE weights in upstream's E2E0 layout (which also holds an unused timbre filter,
    left at its initial values): ROOT/pretrain/rmvpe.pt. Returns ROOT."""
    from modules.F0Predictor.rmvpe.model import E2E0

    model = E2E0(4, 1, (2, 2))
    missing, unexpected = model.load_state_dict(torch.load(ours, weights_only=True)["model"], strict=False)
    assert not unexpected and all(k.startswith("unet.tf.") for k in missing), (missing, unexpected)
    root = ours.parent.parent / "upstream"
    (root / "pretrain").mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, root / "pretrain" / "rmvpe.pt")
    return root


def _limit(args, method: str) -> float | None:
    return args.crepe_seconds if method == "crepe" else None


def _result(impl, args, y, clips, stages) -> dict:
    audio_s = sum((b - a) // HOP * HOP for a, b in clips) / SR
    stages["load+resample"]["audio_seconds"] = len(y) / SR
    for st in stages.values():
        if "seconds" in st:
            st["throughput"] = st["audio_seconds"] / st["seconds"]
    return {"impl": impl, "input_seconds": args.seconds, "clips": len(clips), "clip_seconds": audio_s,
            "stages": stages, "peak_rss_mib": C.peak_rss_mib(), "env": C.environment()}


# ================================================================================================ driver
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", help="so-vits-svc 4.1 checkout to compare with (see bench/README.md)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--crepe-seconds", type=float, default=10.0,
                   help="crepe (full model, slow on CPU) runs on the first clips up to this much audio")
    C.add_run_arguments(p)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--rmvpe", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_out:
        C.worker_result(args.worker_out, worker_ours(args) if args.worker == "ours" else worker_reference(args))
        return
    C.announce(args)
    results = []
    with tempfile.TemporaryDirectory(prefix="svc_bench_pre_") as tmp:
        tmp = Path(tmp)
        wav = make_input(tmp / "input48k_stereo.wav", args.seconds)
        rmvpe = make_rmvpe_weights(tmp)
        common = ["--seconds", str(args.seconds), "--input", str(wav), "--rmvpe", str(rmvpe), "--crepe-seconds",
                  str(args.crepe_seconds), "--methods", *args.methods]
        for impl in ["ours"] + (["reference"] if args.reference else []):
            print(f"running {impl} ...", flush=True)
            extra = ["--reference", args.reference] if args.reference else []
            results.append(C.run_measured(SCRIPT, ["--worker", impl, *common, *extra], args.max_load, args.wait))
    names = list(results[0]["stages"])
    headers = ["stage", "audio s"]
    for r in results:
        headers += [f"{r['impl']} s", f"{r['impl']} audio-s/s", f"{r['impl']} init s"]
    if len(results) == 2:
        headers.append("ours/ref time")
    rows = []
    for name in names:
        row: list = [name, results[0]["stages"].get(name, {}).get("audio_seconds")]
        for r in results:
            st = r["stages"].get(name, {})
            row += [st.get("seconds"), st.get("throughput"), st.get("init")] if "seconds" in st else ["n/a", "-", "-"]
        if len(results) == 2:
            a, b = (r["stages"].get(name, {}).get("seconds") for r in results)
            row.append(a / b if a and b else None)
        rows.append(row)
    r0 = results[0]
    C.print_table(headers, rows, f"Preprocessing {args.seconds:g} s of speech (48 kHz stereo WAV -> 44.1 kHz, hop "
                                 f"{HOP}); {r0['clips']} clips, {r0['clip_seconds']:.1f} s kept; torch "
                                 f"{C.THREADS} threads")
    for r in results:
        for name, st in r["stages"].items():
            if "error" in st:
                print(f"  {r['impl']} {name}: {st['error']}")
        print(f"  {r['impl']} peak RSS {r['peak_rss_mib']:.0f} MiB; load1 {r['quiet']['load1_before']}, "
              f"foreign CPU {r['quiet']['foreign_cores']} cores")
    stubs = next((r.get("stubs") for r in results if r.get("stubs")), None)
    if stubs:
        print("\nReference run with these in-process stubs (benchmark only):")
        for s in stubs:
            print(f"  - {s}")
    C.write_json(args.json, {"mode": "preprocess", "results": results, "env": C.environment(),
                             "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
