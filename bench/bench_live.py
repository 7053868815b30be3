"""Live conversion on the CPU: the smallest block at which a stream of ``--seconds`` has no deadline miss, the
latency there, block compute p50/p95, CPU use, and the delay measured on the output itself.

For each model (``tiny-base``: the shipped base with Whisper tiny.en units; ``41``: the so-vits-svc 4.1 default
44.1 kHz model, random weights, random vec768l12-size encoder) blocks are tried from small to large; each run
streams espeak-ng speech through :class:`svc_pl.infer.stream.StreamConverter` as fast as it can while timing every
block against its duration (a miss is a block that computed longer than it lasts). At the first block with no
miss the output is cross-correlated (loudness envelopes, 1 ms resolution) against the offline conversion of the
same audio (noise scale 0): the delay found must equal the reported latency within 5 ms. ``--f0`` compares the
streaming F0 trackers (per-block compute, and agreement in cents with pm on the whole file).

The machine's load is printed with every figure: on a shared machine the timings are upper bounds.

    python bench/bench_live.py --json live.json
    python bench/bench_live.py --models tiny-base --seconds 60 --base /path/to/base.safetensors
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench._common as C  # noqa: E402

RATE = 44100  # the device rate


def _voice(name: str, base: str | None, tmp: Path):
    from svc_pl.data.content import load_content_encoder, random_content_encoder
    from svc_pl.infer.loading import VoiceModel, load_voice_model

    if name == "tiny-base":
        from svc_pl.pretrained import load_base_synthesizer

        net, meta = load_base_synthesizer(base or "tiny-base")
        info = meta["dataset_info"]
        vm = VoiceModel(net.prepare_for_inference(), info["sampling_rate"], info["hop_length"],
                        dict(info["speakers"]), info.get("content_encoder", "whisper-ppg"),
                        info.get("unit_interpolate_mode", "nearest"), str(base or "tiny-base"),
                        unit_window=info.get("unit_window"))
        return vm, load_content_encoder("whisper-ppg", "whisper-tiny.en")
    g, c = C.make_default_model(tmp / "model41")
    return load_voice_model(g, c), random_content_encoder("vec768l12")


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _stream(vm, encoder, audio, block: float, f0: str, context: float):
    from svc_pl.infer.converter import ConvertOptions
    from svc_pl.infer.stream import StreamConverter

    opts = ConvertOptions(noise_scale=0.0, f0_method=f0)
    s = StreamConverter(vm, encoder, opts, device_rate=RATE, block_seconds=block, context_seconds=context,
                        drop_late=False)
    d = s.device_block
    x = np.pad(audio, (0, -len(audio) % d + s.latency_samples + d))
    for i in range(0, 3 * d, d):  # warm-up blocks (kernels set up), not counted
        s.process(x[i:i + d])
    s.reset()
    t0, c0, load0 = time.perf_counter(), _cpu_seconds(), C.load_average()
    out = np.concatenate([s.process(x[i:i + d]) for i in range(0, len(x), d)])
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    st = s.stats()
    st.update(cpu_use=cpu / (len(x) / RATE), realtime_factor=wall / (len(x) / RATE), load_before=load0,
              load_after=C.load_average())
    return s, out[s.latency_samples:s.latency_samples + len(audio)], out, st


def _envelope(y: np.ndarray) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    env = np.sqrt(np.maximum(sosfiltfilt(butter(2, 60 / (RATE / 2), output="sos"), y.astype(np.float64) ** 2), 0))
    return np.log(env[:: RATE // 1000] + 1e-4)  # 1 ms frames


def _measured_delay(raw_out: np.ndarray, offline: np.ndarray, max_seconds: float) -> float:
    """The lag (s) of the streamed output (as a device plays it) against the offline conversion."""
    a, b = _envelope(raw_out), _envelope(offline)
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    best, lag = -np.inf, 0
    for k in range(0, int(max_seconds * 1000)):
        v = float(np.dot(a[k:], b[: n - k]))
        if v > best:
            best, lag = v, k
    return lag / 1000


def _f0_trackers(vm, audio: np.ndarray, block: float) -> list[dict]:
    """Per-block F0 compute (block + 80 ms left margin, as the stream runs it) and agreement with pm on the file."""
    from svc_pl.data.audio import resample
    from svc_pl.data.pitch import get_f0_extractor

    y = resample(audio, RATE, vm.sampling_rate)
    sr, hop = vm.sampling_rate, vm.hop_length
    ref = get_f0_extractor("pm", sample_rate=sr, hop_length=hop).compute(y).raw
    rows = []
    n_block = int(round(block * sr / hop)) * hop
    margin = int(0.08 * sr) // hop * hop
    for name in ("pm", "fcpe", "rmvpe", "pesto"):
        try:
            if name == "pesto":
                import pesto
                import torch

                def track(seg, n, _p=pesto):
                    _, f, conf, _ = _p.predict(torch.from_numpy(seg), sr, step_size=1000 * hop / sr)
                    f = f.numpy().reshape(-1)[:n]
                    f = np.where(conf.numpy().reshape(-1)[:n] > 0.5, f, 0)
                    return np.pad(f, (0, n - len(f)))
            else:
                ex = get_f0_extractor(name, sample_rate=sr, hop_length=hop)

                def track(seg, n, _ex=ex):
                    return _ex.compute(seg, n_frames=n).raw
        except Exception as err:  # no weights (rmvpe), package missing
            rows.append({"f0": name, "skipped": f"{type(err).__name__}: {err}"[:120]})
            continue
        times, est = [], np.zeros(len(ref))
        for s in range(margin, len(y) - n_block, n_block):
            seg = y[s - margin:s + n_block]
            t0 = time.perf_counter()
            f = track(seg, len(seg) // hop)
            times.append(time.perf_counter() - t0)
            a = s // hop
            est[a:a + n_block // hop] = f[margin // hop:][: len(est[a:a + n_block // hop])]
        both = (est > 0) & (ref > 0)
        cents = float(np.median(np.abs(1200 * np.log2(est[both] / ref[both])))) if both.any() else float("nan")
        rows.append({"f0": name, "block_p50_ms": 1000 * float(np.median(times)),
                     "block_p95_ms": 1000 * float(np.percentile(times, 95)), "cents_vs_pm_file": cents,
                     "voicing_agreement": float(np.mean((est > 0) == (ref > 0)))})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny-base,41")
    p.add_argument("--base", help="base file for tiny-base (default: the shipped one)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--blocks", default="tiny-base:0.04,0.08,0.12,0.16,0.24,0.32;41:0.1,0.2,0.3,0.4,0.5,0.7,1.0")
    p.add_argument("--context", type=float, default=1.0)
    p.add_argument("--f0", default="pm", help="F0 tracker of the streams")
    p.add_argument("--compare-f0", action="store_true", help="also time the F0 trackers per block")
    p.add_argument("--threads", type=int, default=C.THREADS)
    p.add_argument("--json")
    args = p.parse_args()
    C.setup_torch(args.threads)
    print(f"machine: {C.environment()}, load {C.load_average():.2f} (shared machine: timings are upper bounds)")
    audio, kind = C.test_speech(args.seconds, RATE)
    print(f"input: {args.seconds:g} s of {kind} at {RATE} Hz")
    blocks = dict(part.split(":") for part in args.blocks.split(";"))
    results = {"environment": C.environment(), "seconds": args.seconds, "rows": [], "f0": []}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            vm, encoder = _voice(name, args.base, Path(tmp))
            found = None
            for block in (float(b) for b in blocks[name].split(",")):
                s, aligned, raw, st = _stream(vm, encoder, audio, block, args.f0, args.context)
                row = {"model": name, "block_asked": block, **st}
                print(f"{name} block {st['block_seconds'] * 1000:.0f} ms: misses {st['deadline_misses']}/"
                      f"{st['blocks']}, p50 {st['block_compute_p50_seconds'] * 1000:.1f} ms, p95 "
                      f"{st['block_compute_p95_seconds'] * 1000:.1f} ms, latency {st['latency_seconds'] * 1000:.1f} ms, "
                      f"CPU {st['cpu_use']:.2f} cores, load {st['load_before']:.1f}-{st['load_after']:.1f}", flush=True)
                rows.append(row)
                if st["deadline_misses"] == 0:
                    found = (s, raw, row)
                    break
            if found is None:
                print(f"{name}: every block tried missed deadlines")
                continue
            s, raw, row = found
            from svc_pl.infer.converter import Converter, ConvertOptions

            from svc_pl.data.audio import resample

            conv = Converter(vm, encoder)
            offline = resample(conv.convert(audio, RATE, ConvertOptions(noise_scale=0.0, f0_method=args.f0,
                                                                        max_silence_kept=2.0)),
                               vm.sampling_rate, RATE)[: len(audio)]
            delay = _measured_delay(raw[: len(audio) + s.latency_samples], offline, s.latency_seconds + 0.2)
            row.update(measured_delay_seconds=delay, delay_error_ms=1000 * (delay - s.latency_seconds),
                       smallest_block_without_miss=True)
            print(f"{name}: smallest block without a miss {row['block_seconds'] * 1000:.0f} ms, latency "
                  f"{s.latency_seconds * 1000:.1f} ms, measured delay {delay * 1000:.1f} ms "
                  f"({row['delay_error_ms']:+.1f} ms)", flush=True)
            if args.compare_f0 and name == "tiny-base":
                results["f0"] = _f0_trackers(vm, audio[: RATE * 20], row["block_seconds"])
                for r in results["f0"]:
                    print("  f0", r)
    results["rows"] = rows
    C.print_table(["model", "block ms", "misses", "p50 ms", "p95 ms", "latency ms", "delay ms", "CPU", "load"],
                  [[r["model"], 1000 * r["block_seconds"], r["deadline_misses"], 1000 * r["block_compute_p50_seconds"],
                    1000 * r["block_compute_p95_seconds"], 1000 * r["latency_seconds"],
                    1000 * r.get("measured_delay_seconds", float("nan")), r["cpu_use"], r["load_before"]]
                   for r in rows])
    C.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
