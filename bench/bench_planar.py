"""One NSF-HiFiGAN residual block (kernel 3, 7 or 11, three dilated pairs 1/3/5) at each upsampling stage's width
in ONNX Runtime, its convolutions exported 1-D (B, C, T) against 2-D ``(1, k)`` on (B, C, 1, T), which ONNX Runtime
runs with its blocked NCHWc kernels: the measurement behind ``svc_pl.infer.ort_graphs.planar_min_channels``.

    python bench/bench_planar.py [--frames 502] [--hide-avx512] [--json planar.json]

Each stage gets the length the 4.1 decoder gives it at ``--frames`` frames (x8, x64, x128, x256, x512 samples for
256, 128, 64, 32, 16 channels). Best of 3 timed runs after one warm-up, 2 intra-op threads; ratio = 2-D / 1-D.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import _common as C
import numpy as np

STAGES = ((256, 8), (128, 64), (64, 128), (32, 256), (16, 512))


def _stage(torch, channels: int, kernel: int, planar: bool):
    from svc_pl.infer.ort_graphs import PlanarStage
    from svc_pl.layers.conv import remove_weight_norm_modules
    from svc_pl.layers.nsf import ResBlock1, mean_of_blocks

    class Stage(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([ResBlock1(channels, kernel, (1, 3, 5))])
            for m in self.blocks.modules():
                remove_weight_norm_modules(m)
            self.planar = PlanarStage.of(self.blocks, 1) if planar else None

        def forward(self, x):
            return self.planar(x) if self.planar is not None else mean_of_blocks(self.blocks, x)

    torch.manual_seed(0)
    return Stage().eval()


def _time(torch, module, x) -> tuple[float, np.ndarray]:
    import onnxruntime as ort

    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, (x,), buf, input_names=["x"], dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = C.THREADS, 1
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    out = sess.run(None, feed)[0]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        sess.run(None, feed)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=502, help="decoder frames the stage lengths follow")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--hide-avx512", action="store_true", help="measure AVX2 kernels (see bench/_common.py)")
    args = p.parse_args(argv)
    if args.hide_avx512:
        code = C.rerun_hiding_avx512(__file__, argv if argv is not None else sys.argv[1:])
        if code is not None:
            raise SystemExit(code)
    torch = C.setup_torch()
    import warnings

    warnings.filterwarnings("ignore")
    rows, results = [], []
    for channels, up in STAGES:
        x = torch.randn(1, channels, args.frames * up, generator=torch.Generator().manual_seed(1))
        for kernel in (3, 7, 11):
            t1, o1 = _time(torch, _stage(torch, channels, kernel, False), x)
            t2, o2 = _time(torch, _stage(torch, channels, kernel, True), x)
            err = float(np.abs(o1 - o2).max() / np.abs(o1).max())
            rows.append([channels, kernel, f"{t1:.3f}", f"{t2:.3f}", t2 / t1, f"{err:.1e}"])
            results.append({"channels": channels, "kernel": kernel, "one_d": t1, "two_d": t2, "ratio": t2 / t1,
                            "rel_err": err})
            print(f"  {channels} channels, kernel {kernel}: 1-D {t1:.3f} s, 2-D {t2:.3f} s", flush=True)
    from svc_pl.infer.ort_graphs import planar_min_channels

    cap = torch.backends.cpu.get_cpu_capability()
    C.print_table(["channels", "kernel", "1-D s", "2-D s", "2-D / 1-D", "rel. diff"], rows,
                  f"One decoder stage in ONNX Runtime, {args.frames} frames ({cap} kernels; svc_pl exports 2-D from "
                  f"{planar_min_channels()} channels here)")
    C.write_json(args.json, {"frames": args.frames, "cpu_capability": cap, "results": results,
                             "env": C.environment()})


if __name__ == "__main__":
    main()
