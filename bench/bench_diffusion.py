"""Shallow diffusion benchmark: seconds of CPU time per second of audio for the so-vits-svc 4.1 diffusion model.

    python bench/bench_diffusion.py [--reference SO_VITS_SVC_CHECKOUT] [--seconds 10] [--lengths 5,20,60]
        [--converter-precisions fp32,bf16] [--json out.json]

One random model with the 4.1 default sizes (768-dim units, 20 WaveNet layers of 512 channels, 256 hidden, 128 mels,
1000 steps) is written once in so-vits-svc's format (``model_0.pt`` + ``diffusion.yaml``). Each worker loads that
same file and runs, on the same inputs (``--seconds`` of 44.1 kHz audio = seconds * 44100 / 512 frames):

- shallow: refine a given mel from depth ``k_step`` 100 with ``dpm-solver++``, speedup 10 (10 network calls);
- only-diffusion: from noise over all 1000 steps, speedup 10 (100 network calls).

svc_pl runs in fp32 and under CPU bf16 autocast; the reference (``Unit2Mel`` from the checkout, imported from
``--reference`` in the worker only; its code is never copied) in fp32. Then svc_pl's peak memory over
``--lengths`` in shallow mode, twice:

- the model call alone, one call on the whole input (what the denoiser's cached condition projections cost);
- the whole conversion, ``svc-pl infer`` run in a fresh process on ``--lengths`` seconds of speech with pauses
  (4.1 default synthesizer and diffusion model, a random NSF-HiFiGAN vocoder of openvpi's 44.1 kHz size, a random
  content encoder of vec768l12's size, F0 pm), plain and with ``--shallow-diffusion --k-step 100``: reading,
  slicing, units, synthesis, diffusion, vocoder and the streamed write, peak RSS of that process
  (``--converter-precisions``; the speech-with-pauses input comes from ``_common.test_speech``).

Each figure comes from a fresh process on a quiet machine (see ``_common.py``); the memory sweeps are worth reading
under load too, their timings are not. bf16 is only faster on CPUs with native bf16 (AMX / AVX512-BF16); elsewhere
expect it to be slower.
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


# openvpi's pretrain/nsf_hifigan config.json (the network and mel keys), the vocoder so-vits-svc 4.1 uses
VOCODER = dict(sampling_rate=SR, num_mels=128, n_fft=2048, win_size=2048, hop_size=HOP, fmin=40, fmax=16000,
               upsample_rates=[8, 8, 2, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4, 4], upsample_initial_channel=512,
               resblock="1", resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3)


def make_vocoder(folder: Path, seed: int = 0) -> Path:
    """openvpi's NSF-HiFiGAN at its 44.1 kHz size with random weights: ``folder/model`` + ``folder/config.json``."""
    import json

    torch = C.setup_torch()
    from svc_pl.compat.checkpoint import to_sovits_state_dict
    from svc_pl.infer.enhancer import VocoderConfig

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(VOCODER))
    torch.manual_seed(seed)
    net = VocoderConfig.from_json(folder / "config.json").build()
    torch.save({"generator": to_sovits_state_dict(net)}, folder / "model")
    return folder


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


def worker_converter(args) -> dict:
    """``svc-pl infer`` on ``args.input`` in this (fresh) process: plain, or with shallow diffusion."""
    import soundfile as sf

    C.setup_torch()
    from svc_pl.cli import main as cli_main

    out = Path(args.input).parent / f"out_{args.mode}_{args.precision}"
    argv = ["infer", args.input, "-o", str(out), "-m", args.voice, "-s", C.SPEAKER, "--random-encoder", "--no-progress",
            "--f0", "pm", "--precision", args.precision]
    if args.mode == "shallow":
        argv += ["--shallow-diffusion", "--diffusion-model", args.model, "--diffusion-config", args.config,
                 "--vocoder", args.vocoder, "--k-step", "100", "--diffusion-method", "dpm-solver++",
                 "--diffusion-speedup", "10"]
    t0 = time.perf_counter()
    code = cli_main(argv)
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"svc-pl {' '.join(argv)} exited with {code}")
    (written,) = out.glob("*.wav")
    info = sf.info(written)
    return {"impl": f"svc-pl infer {args.precision}", "mode": args.mode, "seconds": args.seconds,
            "out_seconds": info.frames / info.samplerate, "wall": wall, "rtf": wall / args.seconds,
            "peak_rss_mib": C.peak_rss_mib(), "finite": bool(np.isfinite(sf.read(written, dtype="float32")[0]).all())}


def converter_sweep(args, tmp: Path, model: Path, config: Path) -> list[dict]:
    """Peak RSS of whole ``svc-pl infer`` runs (each in a fresh process) over ``--lengths``, plain and shallow."""
    import soundfile as sf

    voice, _ = C.make_default_model(tmp / "voice")
    vocoder = make_vocoder(tmp / "nsf_hifigan")
    rows = []
    for seconds in [float(s) for s in args.lengths.split(",") if s]:
        folder = tmp / f"in_{seconds:g}"
        folder.mkdir()
        wav = folder / f"speech_{seconds:g}s.wav"
        sf.write(wav, C.test_speech(seconds, SR)[0], SR)
        for precision in args.converter_precisions.split(","):
            for mode in ("shallow", "plain"):
                print(f"svc-pl infer {mode} {precision}, {seconds:g} s ...", flush=True)
                r = C.run_measured(SCRIPT, ["--worker", "converter", "--mode", mode, "--precision", precision,
                                            "--seconds", str(seconds), "--input", str(wav), "--voice", str(voice),
                                            "--model", str(model), "--config", str(config), "--vocoder",
                                            str(vocoder)], args.max_load, args.wait, retries=args.converter_retries)
                print(f"  peak RSS {r['peak_rss_mib']:.0f} MiB, {r['rtf']:.2f} s per s of audio (load "
                      f"{r['quiet']['load1_before']}, foreign CPU {r['quiet']['foreign_cores']} cores)", flush=True)
                rows.append(r)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", help="so-vits-svc 4.1 checkout to compare with (see bench/README.md)")
    p.add_argument("--seconds", type=float, default=10.0, help="audio length of the timed input")
    p.add_argument("--lengths", default="5,20,60", help="audio lengths (s) of the memory sweep, comma-separated")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)")
    p.add_argument("--modes", default="shallow,only-diffusion", help="timed modes, comma-separated ('' for none)")
    p.add_argument("--json", help="write all figures to this JSON file")
    p.add_argument("--converter-precisions", default="fp32",
                   help="precisions of the svc-pl infer memory sweep, comma-separated ('' skips it)")
    p.add_argument("--converter-retries", type=int, default=1,
                   help="svc-pl infer runs repeated when the machine was busy (0: memory figures only)")
    p.add_argument("--skip-model", action="store_true",
                   help="skip the model-call timings and memory sweep (only the svc-pl infer sweep)")
    p.add_argument("--max-load", type=float, default=C.MAX_LOAD)
    p.add_argument("--wait", type=float, default=600)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=["ours", "reference", "converter"], help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--voice", help=argparse.SUPPRESS)
    p.add_argument("--vocoder", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_out:
        worker = {"ours": worker_ours, "reference": worker_reference, "converter": worker_converter}[args.worker]
        C.worker_result(args.worker_out, worker(args))
        return
    print(f"machine: {C.environment()}")
    if not args.reference:
        print("no --reference given: printing svc_pl figures only")
    with tempfile.TemporaryDirectory(prefix="svc_bench_diffusion_") as tmp:
        model, config = make_model(Path(tmp))
        results, ratios, memory = ([], {}, []) if args.skip_model else model_figures(args, model, config)
        converter = converter_sweep(args, Path(tmp), model, config) if args.converter_precisions else []
    if converter:
        call = {r["seconds"]: r["peak_rss_mib"] for r in memory}
        rows = []
        for seconds in sorted({r["seconds"] for r in converter}):
            for precision in args.converter_precisions.split(","):
                by = {r["mode"]: r for r in converter if r["seconds"] == seconds and r["impl"].endswith(precision)}
                plain, shallow = by["plain"], by["shallow"]
                ok = shallow["finite"] and abs(shallow["out_seconds"] - seconds) < 0.01
                rows.append([seconds, precision, call.get(seconds), plain["peak_rss_mib"], shallow["peak_rss_mib"],
                             plain["rtf"], shallow["rtf"], ok,
                             max(plain["quiet"]["load1_before"], shallow["quiet"]["load1_before"]),
                             max(plain["quiet"]["foreign_cores"], shallow["quiet"]["foreign_cores"])])
        C.print_table(["seconds", "precision", "model call MiB", "infer plain MiB", "infer shallow MiB",
                       "plain s/s", "shallow s/s", "ok", "load1", "foreign"], rows,
                      "Peak RSS against input length: the diffusion model call alone (fp32, whole input) and whole "
                      "svc-pl infer runs (speech with pauses, F0 pm, k_step 100, dpm-solver++ speedup 10); each a "
                      "fresh process; s/s = seconds per second of audio (only meaningful at low load)")
    C.write_json(args.json, {"mode": "diffusion", "results": results, "ratios": ratios, "memory": memory,
                             "converter": converter, "env": C.environment(), "command": " ".join(sys.argv)})


def model_figures(args, model: Path, config: Path) -> tuple[list[dict], dict, list[dict]]:
    """The model call: timings of svc_pl (fp32, bf16) and the reference per mode, then peak memory over lengths."""
    common = ["--model", str(model), "--config", str(config), "--repeats", str(args.repeats)]
    results, ratios = [], {}
    for mode in [m for m in args.modes.split(",") if m]:
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
    if results:
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
    return results, ratios, memory


if __name__ == "__main__":
    main()
