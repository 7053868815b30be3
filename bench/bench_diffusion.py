"""Shallow diffusion benchmark: seconds of CPU time per second of audio for the so-vits-svc 4.1 diffusion model.

    python bench/bench_diffusion.py [--reference SO_VITS_SVC_CHECKOUT] [--seconds 10] [--json out.json]

One random model with the 4.1 default sizes (768-dim units, 20 WaveNet layers of 512 channels, 256 hidden, 128 mels,
1000 steps) is written once in so-vits-svc's format (``model_0.pt`` + ``diffusion.yaml``). Each worker loads that
same file and runs, on the same inputs (``--seconds`` of 44.1 kHz audio = seconds * 44100 / 512 frames):

- shallow: refine a given mel from depth ``k_step`` 100 with ``dpm-solver++``, speedup 10 (10 network calls);
- only-diffusion: from noise over all 1000 steps, speedup 10 (100 network calls).

svc_pl runs in fp32 and under CPU bf16 autocast; the reference (``Unit2Mel`` from the checkout, imported from
``--reference`` in the worker only; its code is never copied) in fp32. Then svc_pl's peak memory over
``--lengths`` in shallow mode. Each figure comes from a fresh process on a quiet machine (see ``_common.py``).
bf16 is only faster on CPUs with native bf16 (AMX / AVX512-BF16); elsewhere expect it to be slower.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SCRIPT = Path(__file__).resolve()
SR, HOP = 44100, 512
SIZES = dict(unit_dim=768, n_speakers=1, use_pitch_aug=False, n_mels=128, n_layers=20, n_chans=512, n_hidden=256,
             timesteps=1000, k_step_max=0)


def make_model(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """The 4.1 default diffusion model with random weights, saved in so-vits-svc's format."""
    torch = C.setup_torch()
    from svc_pl.compat import save_sovits_diffusion
    from svc_pl.diffusion.model import MelDiffusion

    torch.manual_seed(seed)
    model = MelDiffusion(**SIZES)
    with torch.no_grad():  # a trained-looking model: no zero-initialised weights
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    save_sovits_diffusion(model, folder / "model_0.pt", folder / "diffusion.yaml", speakers={"speaker0": 0})
    return folder / "model_0.pt", folder / "diffusion.yaml"


def inputs(seconds: float, seed: int = 0):
    """(units (1, N, 768), f0 (1, N, 1), volume (1, N, 1), mel (1, N, 128)) for ``seconds`` of 44.1 kHz audio."""
    import torch

    n = int(seconds * SR / HOP)
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float32)[None, :, None]
    units = torch.randn(1, n, SIZES["unit_dim"], generator=g)
    f0 = 220 * 2 ** (torch.sin(t / 40) / 2)
    volume = 0.1 + 0.05 * torch.rand(1, n, 1, generator=g)
    mel = -8 + 5 * torch.rand(1, n, SIZES["n_mels"], generator=g)
    return units, f0, volume, mel


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def worker_ours(args) -> dict:
    torch = C.setup_torch()
    from svc_pl.compat import load_sovits_diffusion

    model = load_sovits_diffusion(args.model, args.config)
    units, f0, volume, mel = inputs(args.seconds)
    bf16 = args.precision == "bf16"

    def run():
        gen = torch.Generator().manual_seed(0)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if args.mode == "shallow":
                return model.infer(units, f0, volume, 0, gt_mel=mel, k_step=100, method="dpm-solver++", speedup=10,
                                   generator=gen)
            return model.infer(units, f0, volume, 0, gt_mel=None, method="dpm-solver++", speedup=10, generator=gen)

    out = run()  # warm-up, also gives the output for the sanity figure
    times = _time(run, args.repeats)
    return {"impl": f"svc_pl {args.precision}", "mode": args.mode, "seconds": args.seconds, "frames": units.shape[1],
            "wall": C.median(times), "wall_all": times, "rtf": C.median(times) / args.seconds,
            "peak_rss_mib": C.peak_rss_mib(), "finite": bool(torch.isfinite(out.float()).all()),
            "out_std": float(out.float().std())}


def worker_reference(args) -> dict:
    torch = C.setup_torch()
    import yaml

    sys.path.insert(0, str(Path(args.reference).resolve()))
    import diffusion  # noqa: F401  (the checkout's package)

    stub = types.ModuleType("diffusion.vocoder")  # unit2mel imports it only for load_model_vocoder
    stub.Vocoder = object
    sys.modules["diffusion.vocoder"] = stub
    from diffusion.unit2mel import Unit2Mel

    cfg = yaml.safe_load(Path(args.config).read_text())
    m = cfg["model"]
    model = Unit2Mel(cfg["data"]["encoder_out_channels"], m["n_spk"], m["use_pitch_aug"], SIZES["n_mels"],
                     n_layers=m["n_layers"], n_chans=m["n_chans"], n_hidden=m["n_hidden"], timesteps=m["timesteps"],
                     k_step_max=m["k_step_max"])
    model.load_state_dict(torch.load(args.model, map_location="cpu", weights_only=True)["model"])
    model.eval()
    units, f0, volume, mel = inputs(args.seconds)

    def run():
        torch.manual_seed(0)
        with torch.no_grad():
            return model(units, f0, volume, spk_id=torch.tensor([[0]]), gt_spec=mel if args.mode == "shallow" else None,
                         infer=True, infer_speedup=10, method="dpm-solver++",
                         k_step=100 if args.mode == "shallow" else m["timesteps"], use_tqdm=False)

    out = run()
    times = _time(run, args.repeats)
    return {"impl": "so-vits-svc fp32", "mode": args.mode, "seconds": args.seconds, "frames": units.shape[1],
            "wall": C.median(times), "wall_all": times, "rtf": C.median(times) / args.seconds,
            "peak_rss_mib": C.peak_rss_mib(), "finite": bool(torch.isfinite(out).all()), "out_std": float(out.std())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", help="so-vits-svc 4.1 checkout to compare with (see bench/README.md)")
    p.add_argument("--seconds", type=float, default=10.0, help="audio length of the timed input")
    p.add_argument("--lengths", default="5,20,60", help="audio lengths (s) of the memory sweep, comma-separated")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)")
    p.add_argument("--modes", default="shallow,only-diffusion")
    p.add_argument("--json", help="write all figures to this JSON file")
    p.add_argument("--max-load", type=float, default=C.MAX_LOAD)
    p.add_argument("--wait", type=float, default=600)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_out:
        C.worker_result(args.worker_out, worker_ours(args) if args.worker == "ours" else worker_reference(args))
        return
    print(f"machine: {C.environment()}")
    if not args.reference:
        print("no --reference given: printing svc_pl figures only")
    with tempfile.TemporaryDirectory(prefix="svc_bench_diffusion_") as tmp:
        model, config = make_model(Path(tmp))
        common = ["--model", str(model), "--config", str(config), "--repeats", str(args.repeats)]
        results, ratios = [], {}
        for mode in args.modes.split(","):
            runs = [("ours", "fp32"), ("ours", "bf16")] + ([("reference", "fp32")] if args.reference else [])
            by = {}
            for impl, precision in runs:
                print(f"{mode}: running {impl} {precision} ...", flush=True)
                extra = ["--reference", args.reference] if impl == "reference" else []
                r = C.run_measured(SCRIPT, ["--worker", impl, "--mode", mode, "--precision", precision, "--seconds",
                                            str(args.seconds), *common, *extra], args.max_load, args.wait)
                results.append(r)
                by[(impl, precision)] = r
            if ("reference", "fp32") in by:
                ref = by[("reference", "fp32")]["wall"]
                ratios[mode] = {p: ref / by[("ours", p)]["wall"] for p in ("fp32", "bf16")}
        C.print_table(["mode", "impl", "s per s of audio", "min", "max", "peak RSS MiB", "finite", "load1", "foreign"],
                      [[r["mode"], r["impl"], r["rtf"], min(r["wall_all"]) / r["seconds"],
                        max(r["wall_all"]) / r["seconds"], r["peak_rss_mib"], r["finite"], r["quiet"]["load1_before"],
                        r["quiet"]["foreign_cores"]] for r in results],
                      f"Diffusion, 4.1 default sizes, {args.seconds:g} s of 44.1 kHz audio "
                      f"({int(args.seconds * SR / HOP)} frames), dpm-solver++ speedup 10, torch {C.THREADS} threads; "
                      f"median of {args.repeats} after a warm-up")
        if ratios:
            C.print_table(["mode", "speed-up fp32 (ref/ours)", "speed-up bf16 (ref/ours)"],
                          [[m, r["fp32"], r["bf16"]] for m, r in ratios.items()], "Ratios")
        memory = []
        for seconds in [float(s) for s in args.lengths.split(",") if s]:
            r = C.run_measured(SCRIPT, ["--worker", "ours", "--mode", "shallow", "--precision", "fp32", "--seconds",
                                        str(seconds), *common[:4], "--repeats", "1"], args.max_load, args.wait)
            memory.append(r)
        C.print_table(["seconds", "frames", "peak RSS MiB", "s per s of audio"],
                      [[r["seconds"], r["frames"], r["peak_rss_mib"], r["rtf"]] for r in memory],
                      "svc_pl shallow diffusion (fp32): peak memory against input length, one call on the whole input")
    C.write_json(args.json, {"mode": "diffusion", "results": results, "ratios": ratios, "memory": memory,
                             "env": C.environment(), "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
