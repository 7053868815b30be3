"""Inference speed and memory: svc_pl vs. the so-vits-svc 4.1 reference, same model file, same input.

End to end (default): real-time factor, per-stage seconds and peak RSS for 10 s and 60 s inputs (add 600 with
``--seconds 10 60 600``), with the 44.1 kHz 4.1 default model (random weights, one ``G_0.pth`` both load).
``--synth-only``: ``infer`` of the synthesizer alone on random units (10 s and 30 s).
``--backend torch onnxruntime``: svc_pl with each synthesizer backend in the same run (ONNX Runtime runs fp32; its
graphs are exported once, before the timed runs, into a temporary cache, and building their sessions counts as load).
``--model tiny-base``: the shipped DDSP base instead (end to end, no reference).
``--decode-window 256 512 0``: each decoder window (0: whole clips), to measure what the windows' overlap costs.

Every (implementation, length) runs in its own Python process, so the peak RSS is that run's.
torch uses 2 threads. Without ``--reference`` only our figures are printed.

    python bench/bench_infer.py --reference /tmp/sovits_ref --json bench/results/infer.json
    python bench/bench_infer.py --synth-only --reference /tmp/sovits_ref --json bench/results/synth.json
    python bench/bench_infer.py --reference /tmp/sovits_ref --device cuda   # both on the GPU (F0 stays on CPU)
    python bench/bench_infer.py --reference /tmp/sovits_ref --precision fp32 --backend torch onnxruntime
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
STAGES = ["resample", "slicing", "f0", "units", "synthesis", "other"]


def _label(args, precision: str) -> str:
    """ours-<precision>[-ort][-w<window>]: the variant a worker measured."""
    backend = "-ort" if getattr(args, "backend", ["torch"])[0] == "onnxruntime" else ""
    if backend and getattr(args, "ort_planar", "auto") == "off":
        backend += "-1d"
    window = f"-w{args.decode_window[0]}" if getattr(args, "label_window", False) else ""
    return f"ours-{precision}{backend}{window}"


def _planar(ort, args):
    """``--ort-planar off``: the decoder graph all 1-D (the default picks 2-D stages for this CPU)."""
    if args.ort_planar == "off":
        ort.planar_channels = None
    return ort


def _load_model(model_dir: Path, device: str = "cpu"):
    """The benchmark's voice model: the shipped base's checkpoint (``--model tiny-base``) or the 4.1 default."""
    from svc_pl.infer.loading import load_voice_model

    if (model_dir / "base.ckpt").is_file():
        return load_voice_model(model_dir / "base.ckpt", device=device)
    return load_voice_model(model_dir / "G_0.pth", model_dir / "config.json", device=device)


def worker_prepare_ort(args) -> dict:
    """Export the ONNX Runtime graphs (the synthesizer's and the content encoder's) into the cache the timed workers
    use (untimed there), once per model."""
    C.setup_torch()
    from svc_pl.data.content import ContentEncoder, random_content_encoder
    from svc_pl.infer.onnx_backend import OrtContentEncoder, SynthesizerBackends

    t0 = time.perf_counter()
    vm = _load_model(Path(args.model_dir))
    ort = _planar(SynthesizerBackends(vm, "cpu").ort(), args)
    ort.prepare()
    graphs = list(ort.exported)
    # the content encoder's graph too (the converter would export it on first use, inside the timed process's
    # warm-up: its export's memory would then count in that process's peak RSS, a one-off cost per model)
    encoder = random_content_encoder(vm.content_encoder)
    if type(encoder) is ContentEncoder:
        content = OrtContentEncoder(encoder)
        content.session()
        graphs += content.exported
    return {"impl": "export-ort", "seconds": 0.0, "export": time.perf_counter() - t0,
            "graphs": [str(p) for p in graphs]}


# ================================================================================================ workers
def _speech_input(path: Path, seconds: float) -> Path:
    import soundfile as sf

    y, _ = C.test_speech(seconds, 44100)
    sf.write(path, y, 44100)  # 16-bit PCM WAV, what a user hands in
    return path


def worker_ours(args) -> dict:
    torch = C.setup_torch()
    from svc_pl.data.audio import AudioWriter, load_audio
    from svc_pl.data.content import random_content_encoder
    from svc_pl.infer.converter import Converter, ConvertOptions
    from svc_pl.infer.runtime import bound_cpu_kernel_cache

    bound_cpu_kernel_cache()  # as the svc-pl command does, before any model runs
    t0 = time.perf_counter()
    vm = _load_model(Path(args.model_dir), args.device)
    converter = Converter(vm, random_content_encoder(vm.content_encoder), device=args.device)
    if args.backend[0] == "onnxruntime":  # the sessions (graphs were exported by worker_prepare_ort)
        _planar(converter.backends.ort(), args).prepare()
    t_load = time.perf_counter() - t0
    peaks = {"load": C.peak_rss_mib()}  # where the peak RSS is reached: after the load, the warm-up, the runs
    speaker = C.SPEAKER if C.SPEAKER in vm.speakers else 0  # the base's first voice with --model tiny-base
    opts = ConvertOptions(speaker=speaker, transpose=0, slice_db=-40, cluster_ratio=0, auto_predict_f0=False,
                          noise_scale=0.4, f0_method=args.f0, precision=args.precision[0],
                          decode_window=args.decode_window[0], backend=args.backend[0],
                          **({} if args.length_bucket_seconds is None
                             else {"length_bucket_seconds": args.length_bucket_seconds}))
    out_path = Path(args.tmp) / "ours_out.wav"
    if args.warmup:
        y, sr = load_audio(args.warmup)
        converter.convert(y, sr, opts)
    peaks["warmup"] = C.peak_rss_mib()
    runs = []
    for _ in range(args.repeats):
        converter.timings.clear()
        t0 = time.perf_counter()
        y, sr = load_audio(args.input)
        t_read = time.perf_counter() - t0
        # as ``svc-pl infer`` does: blocks are written as they come out, atomically
        t_write = 0.0
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        with AudioWriter(out_path, vm.sampling_rate) as writer:
            for block in converter.iter_convert(y, sr, opts):
                tw = time.perf_counter()
                writer.write(block)
                t_write += time.perf_counter() - tw
            tw = time.perf_counter()
        t_write += time.perf_counter() - tw  # closing: fsync and rename
        t_convert = time.perf_counter() - t0 - t_write
        cpu = _cpu_seconds() - cpu0
        stages = {k: float(converter.timings.get(k, 0.0)) for k in STAGES[:-1]}
        stages["other"] = t_convert - sum(stages.values())
        runs.append({"read": t_read, "convert": t_convert, "write": t_write, "stages": stages,
                     "out_seconds": writer.frames / vm.sampling_rate, "cpu": cpu})
    assert converter.backends.failed is None, converter.backends.failed
    del torch
    return dict(_summary(_label(args, args.precision[0]), args, t_load, runs), peak_rss_by_stage_mib=peaks)


def worker_reference(args) -> dict:
    ref = C.import_reference(args.reference)
    torch = C.setup_torch()
    import soundfile as sf
    import utils  # upstream's
    from inference import infer_tool

    from svc_pl.data.content import random_content_encoder

    timer: dict[str, float] = {}

    def get_speech_encoder(name, device=None, **kwargs):
        if name != "vec768l12":
            raise SystemExit(f"benchmark adapter only provides vec768l12, config asks for {name}")
        return C.UpstreamEncoderAdapter(random_content_encoder(name), timer)

    utils.get_speech_encoder = get_speech_encoder
    C.REFERENCE_STUBS.append("utils.get_speech_encoder -> svc_pl random vec768l12 encoder via .encoder(wav16k) "
                             "(fairseq not installable)")
    _time_calls(infer_tool.slicer, "cut", timer, "slicing")
    _time_calls(infer_tool.slicer, "chunks2audio", timer, "slicing")
    get_f0 = utils.get_f0_predictor

    def timed_f0_predictor(*a, **kw):
        predictor = get_f0(*a, **kw)
        _time_calls(predictor, "compute_f0_uv", timer, "f0")
        return predictor

    utils.get_f0_predictor = timed_f0_predictor

    model_dir = Path(args.model_dir)
    t0 = time.perf_counter()
    svc = infer_tool.Svc(str(model_dir / "G_0.pth"), str(model_dir / "config.json"), device=args.device,
                         cluster_model_path=str(model_dir / "no_cluster.pt"))
    t_load = time.perf_counter() - t0
    _time_calls(svc.net_g_ms, "infer", timer, "synthesis")

    def convert(path):
        return svc.slice_inference(raw_audio_path=str(path), spk=C.SPEAKER, tran=0, slice_db=-40,
                                   cluster_infer_ratio=0, auto_predict_f0=False, noice_scale=0.4, f0_predictor=args.f0)

    out_path = Path(args.tmp) / "ref_out.wav"
    if args.warmup:
        convert(args.warmup)
    runs = []
    for _ in range(args.repeats):
        timer.clear()
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        out = convert(args.input)
        t_convert = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        t0 = time.perf_counter()
        sf.write(out_path, out, svc.target_sample, format="wav")  # as inference_main.py
        t_write = time.perf_counter() - t0
        stages = {k: float(timer.get(k, 0.0)) for k in STAGES[:-1]}
        stages["other"] = t_convert - sum(stages.values())
        runs.append({"read": None, "convert": t_convert, "write": t_write, "stages": stages,
                     "out_seconds": len(out) / svc.target_sample, "cpu": cpu})
    del torch
    result = _summary("reference", args, t_load, runs)
    result["reference"] = ref
    result["stubs"] = list(C.REFERENCE_STUBS)
    return result


def _cpu_seconds() -> float:
    """CPU time (user + system, all threads) of this process so far: on a machine shared with other jobs it
    measures the work done, which wall time does not."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _time_calls(obj, name: str, timer: dict[str, float], key: str) -> None:
    """Wrap ``obj.name`` so the seconds spent in it add up in ``timer[key]`` (nothing else changes)."""
    fn = getattr(obj, name)

    def wrapped(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            timer[key] = timer.get(key, 0.0) + time.perf_counter() - t0

    setattr(obj, name, wrapped)


def _summary(impl: str, args, t_load: float, runs: list[dict]) -> dict:
    best = sorted(runs, key=lambda r: r["convert"])[len(runs) // 2]  # the median run
    total = t_load + (best["read"] or 0.0) + best["convert"] + best["write"]
    return {"impl": impl, "seconds": args.seconds, "f0": args.f0, "load": t_load, "read": best["read"],
            "convert": best["convert"], "write": best["write"], "stages": best["stages"], "total": total,
            "cpu_convert": best.get("cpu"),
            "rtf_convert": best["convert"] / args.seconds, "rtf_total": total / args.seconds,
            "out_seconds": best["out_seconds"], "repeats": len(runs), "all_convert": [r["convert"] for r in runs],
            "peak_rss_mib": C.peak_rss_mib(), "device": args.device, "peak_gpu_mib": _peak_gpu_mib(args.device),
            "env": C.environment()}


def _peak_gpu_mib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def worker_synth(args) -> dict:
    """``infer`` of the synthesizer alone on random units, f0 and voicing of ``args.seconds``."""
    import resource

    torch = C.setup_torch()
    model_dir = Path(args.model_dir)
    frames = int(round(args.seconds * 44100 / 512))
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(1, 768, frames, generator=gen)
    t = torch.arange(frames) * 512 / 44100
    f0 = (220 * 2 ** (torch.sin(2 * np.pi * 0.3 * t) / 2) * (1 + 0.01 * torch.sin(2 * np.pi * 5.5 * t)))[None]
    uv = (torch.rand(1, frames, generator=gen) > 0.15).float()
    t0 = time.perf_counter()
    if args.impl == "ours":
        from svc_pl.compat import load_sovits

        net = load_sovits(model_dir / "G_0.pth", model_dir / "config.json").prepare_for_inference()
        window = args.decode_window[0]
        infer = net.infer
        if args.backend[0] == "onnxruntime":
            from svc_pl.infer.onnx_backend import OrtSynthesizer, file_sha256

            ort = _planar(OrtSynthesizer(net, file_sha256(model_dir / "G_0.pth")), args)
            ort.prepare()
            infer = ort.infer

        def call():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision[0] == "bf16"):
                return infer(c, f0, uv, 0, noise_scale=0.4, decode_window=window)[0]
    else:
        C.import_reference(args.reference)
        import utils
        from models import SynthesizerTrn

        hps = utils.get_hparams_from_file(str(model_dir / "config.json"), True)
        net = SynthesizerTrn(hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length,
                             **hps.model)
        with contextlib.redirect_stdout(sys.stderr):
            utils.load_checkpoint(str(model_dir / "G_0.pth"), net, None)
        net.eval()
        sid = torch.LongTensor([0]).unsqueeze(0)

        def call():
            with torch.no_grad():
                return net.infer(c, f0=f0, uv=uv, g=sid, noice_scale=0.4)[0]
    t_load = time.perf_counter() - t0
    times, sys_times, faults, cpus = [], [], [], []
    for i in range(args.warmups + args.repeats):
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        audio = call()
        dt = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        if i >= args.warmups:
            times.append(dt)
            sys_times.append(ru1.ru_stime - ru0.ru_stime)
            faults.append(ru1.ru_minflt - ru0.ru_minflt)
            cpus.append(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime)
    assert audio.shape[-1] == frames * 512
    impl = _label(args, args.precision[0]) if args.impl == "ours" else args.impl
    result = {"impl": impl, "seconds": args.seconds, "load": t_load, "infer": C.median(times),
              "infer_all": times, "rtf": C.median(times) / args.seconds, "sys": C.median(sys_times),
              "cpu": C.median(cpus),
              "minor_faults": int(C.median(faults)), "peak_rss_mib": C.peak_rss_mib(), "env": C.environment()}
    if args.impl == "reference":
        result["stubs"] = list(C.REFERENCE_STUBS)
    return result


# ================================================================================================ driver
def _variants(args) -> list[tuple[str, str, str, int]]:
    """(worker, precision, backend, window) to run: ours at each ``--precision``, ``--backend`` and
    ``--decode-window`` (ONNX Runtime in fp32 only), then the reference (fp32)."""
    from svc_pl.infer.options import DECODE_WINDOW

    ours = [("ours", p, b, w) for b in args.backend for w in (args.decode_window or [DECODE_WINDOW[b]])
            for p in args.precision if b == "torch" or p == "fp32"]
    return ours + ([("reference", "fp32", "torch", 0)] if args.reference else [])


def _worker_args(args, impl: str, seconds: float, model_dir: Path, tmp: Path, extra: list[str],
                 precision: str = "fp32", backend: str = "torch", window: int = 256) -> list[str]:
    out = ["--worker", impl, "--model-dir", str(model_dir), "--tmp", str(tmp), "--seconds", str(seconds),
           "--repeats", str(args.repeats), "--f0", args.f0, "--precision", precision, "--backend", backend,
           "--decode-window", str(window), "--device", args.device, *extra]
    if args.length_bucket_seconds is not None:
        out += ["--length-bucket-seconds", str(args.length_bucket_seconds)]
    out += ["--ort-planar", args.ort_planar]
    if args.decode_window and len(args.decode_window) > 1:
        out.append("--label-window")
    if args.reference:
        out += ["--reference", args.reference]
    return out


def main_e2e(args, model_dir: Path, tmp: Path) -> dict:
    warm = _speech_input(tmp / "warmup.wav", 3.0)
    results = []
    for seconds in args.seconds:
        wav = _speech_input(tmp / f"input_{seconds:g}s.wav", seconds)
        for impl, precision, backend, window in _variants(args):
            print(f"running {impl} ({precision}, {backend}, window {window}) on {seconds:g} s ...", flush=True)
            extra = ["--input", str(wav)] + ([] if args.no_warmup else ["--warmup", str(warm)])
            results.append(C.run_measured(SCRIPT, _worker_args(args, impl, seconds, model_dir, tmp, extra, precision,
                                                               backend, window), args.max_load, args.wait,
                                          retries=args.retries))
            _save_partial(args, results)
    headers = ["impl", "input s", "load", "read", *STAGES, "convert", "write", "total", "RTF conv", "RTF total",
               "cpu s conv", "peak RSS MiB", "peak GPU MiB", "load1", "foreign"]
    rows = [[r["impl"], r["seconds"], r["load"], r["read"], *(r["stages"][k] for k in STAGES), r["convert"],
             r["write"], r["total"], r["rtf_convert"], r["rtf_total"], r.get("cpu_convert") or 0.0,
             r["peak_rss_mib"], r.get("peak_gpu_mib") or 0.0,
             r["quiet"]["load1_before"], r["quiet"]["foreign_cores"]] for r in results]
    C.print_table(headers, rows, f"End to end on {args.device}, {args.f0} F0, seconds (torch {C.THREADS} threads, "
                                 f"median of {args.repeats} conversion(s) after a 3 s warm-up)")
    ratios = _ratios(results, [("convert", "convert"), ("total", "total"), ("cpu_convert", "CPU s"),
                               ("peak_rss_mib", "peak RSS")])
    return {"mode": "e2e", "input": C.test_speech(0.1)[1], "results": results, "ratios": ratios}


def main_synth(args, model_dir: Path, tmp: Path) -> dict:
    results = []
    for seconds in args.synth_seconds:
        for impl, precision, backend, window in _variants(args):
            print(f"running {impl} ({precision}, {backend}, window {window}) synthesizer on {seconds:g} s ...",
                  flush=True)
            extra = ["--synth", "--warmups", str(args.warmups)]
            results.append(C.run_measured(SCRIPT, _worker_args(args, impl, seconds, model_dir, tmp, extra, precision,
                                                               backend, window), args.max_load, args.wait,
                                          retries=args.retries))
            _save_partial(args, results)
    headers = ["impl", "units s", "infer s", "RTF", "cpu s", "sys s", "minor faults", "peak RSS MiB", "load1",
               "foreign"]
    rows = [[r["impl"], r["seconds"], r["infer"], r["rtf"], r.get("cpu") or 0.0, r["sys"], r["minor_faults"],
             r["peak_rss_mib"],
             r["quiet"]["load1_before"], r["quiet"]["foreign_cores"]] for r in results]
    C.print_table(headers, rows, f"Synthesizer infer only (random units; torch {C.THREADS} threads; median of "
                                 f"{args.repeats} after {args.warmups} warm-up)")
    ratios = _ratios(results, [("infer", "infer"), ("cpu", "CPU s"), ("peak_rss_mib", "peak RSS")])
    return {"mode": "synth", "results": results, "ratios": ratios}


def _save_partial(args, results: list[dict]) -> None:
    """Write what has been measured so far (a run cut short, e.g. on a starved machine, keeps its figures)."""
    if args.json:
        C.write_json(args.json, {"partial": True, "results": results})


def _ratios(results: list[dict], keys: list[tuple[str, str]]) -> list[dict]:
    out = []
    by = {(r["impl"], r["seconds"]): r for r in results}
    for (impl, seconds), ours in by.items():
        ref = by.get(("reference", seconds))
        if not impl.startswith("ours") or ref is None:
            continue
        out.append({"impl": impl, "seconds": seconds,
                    **{label: (ours.get(k) or float("nan")) / (ref.get(k) or float("nan")) for k, label in keys},
                    "speed-up": ref[keys[0][0]] / ours[keys[0][0]]})
    if out:
        C.print_table(["impl", "input s", *(f"ours/ref {label}" for _, label in keys), f"speed-up ({keys[0][1]})"],
                      [[o["impl"], o["seconds"], *(o[label] for _, label in keys), o["speed-up"]] for o in out],
                      "Ratios (below 1: ours is less)")
    stubs = next((r.get("stubs") for r in results if r.get("stubs")), None)
    if stubs:
        print("\nReference run with these in-process stubs (benchmark only):")
        for s in stubs:
            print(f"  - {s}")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[10, 60], help="input lengths (end to end)")
    p.add_argument("--synth-only", action="store_true", help="time the synthesizer's infer on random units")
    p.add_argument("--synth-seconds", type=float, nargs="+", default=[10, 30])
    p.add_argument("--reference", help="so-vits-svc 4.1 checkout to compare with (see bench/README.md)")
    p.add_argument("--f0", default="pm", help="F0 method for end to end (default pm)")
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"],
                   help="svc_pl precisions to run (the reference always runs fp32)")
    p.add_argument("--decode-window", type=int, nargs="+", default=None,
                   help="svc_pl decoder window(s) in frames (0: whole clips; default: the converter's for each "
                        "backend, 256 torch / 512 onnxruntime)")
    p.add_argument("--length-bucket-seconds", type=float, default=None,
                   help="svc_pl: pad clips to a multiple of this many seconds (default: the converter's, 0.5)")
    p.add_argument("--backend", nargs="+", choices=["torch", "onnxruntime"], default=["torch"],
                   help="svc_pl synthesizer backend(s) to run (onnxruntime: fp32 only)")
    p.add_argument("--ort-planar", choices=["auto", "off"], default="auto",
                   help="ONNX Runtime decoder: 2-D convolutions in the stages that gain on this CPU (auto, as "
                        "conversion does) or all 1-D (off, as before 2026-12-04)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per process (median reported)")
    p.add_argument("--warmups", type=int, default=1, help="untimed infer calls first (--synth-only)")
    p.add_argument("--no-warmup", action="store_true", help="end to end: no 3 s conversion before timing")
    p.add_argument("--device", default="cpu", help="end to end: cpu or cuda, for both implementations")
    p.add_argument("--model", choices=["41-default", "tiny-base"], default="41-default",
                   help="end to end: the 4.1 default model (random weights) or the shipped DDSP base (no reference)")
    p.add_argument("--retries", type=int, default=1, help="runs measured again when the machine was busy")
    C.add_run_arguments(p)
    # worker-only
    p.add_argument("--synth", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--warmup", help=argparse.SUPPRESS)
    p.add_argument("--label-window", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--prepare-ort", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker_out:
        args.seconds = args.seconds[0]
        args.impl = args.worker
        if args.prepare_ort:
            result = worker_prepare_ort(args)
        elif args.synth:
            result = worker_synth(args)
        else:
            result = worker_ours(args) if args.worker == "ours" else worker_reference(args)
        C.worker_result(args.worker_out, result)
        return
    if args.model == "tiny-base" and (args.reference or args.synth_only):
        raise SystemExit("--model tiny-base runs end to end without --reference (so-vits-svc has no DDSP decoder)")
    C.announce(args)
    with tempfile.TemporaryDirectory(prefix="svc_bench_infer_") as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "model"
        if args.model == "tiny-base":
            from svc_pl.pretrained import write_base_ckpt

            write_base_ckpt(model_dir / "base.ckpt", "tiny-base")
        else:
            C.make_default_model(model_dir)
        export = None
        if "onnxruntime" in args.backend:  # graphs exported once into a cache of this run, before any timing
            from svc_pl.infer.options import DECODE_WINDOW

            os.environ["SVC_PL_CACHE"] = str(tmp / "cache")
            print("exporting the ONNX Runtime graphs ...", flush=True)
            export = C.run_worker(SCRIPT, ["--worker", "ours", "--prepare-ort", "--ort-planar", args.ort_planar,
                                           "--model-dir", str(model_dir),
                                           "--seconds", "0", "--decode-window",
                                           *map(str, args.decode_window or [DECODE_WINDOW["onnxruntime"]])])
            print(f"  exported in {export['export']:.1f} s", flush=True)
        payload = main_synth(args, model_dir, tmp) if args.synth_only else main_e2e(args, model_dir, tmp)
    payload["ort_export"] = export
    payload["env"] = C.environment()
    payload["command"] = " ".join(sys.argv)
    C.write_json(args.json, payload)


if __name__ == "__main__":
    main()
