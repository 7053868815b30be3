"""Do length buckets help ONNX Runtime? The cost of a frame count the session has not run before.

The 4.1 default synthesizer (random weights, `_common.make_default_model`) is exported with svc_pl's ONNX Runtime
backend (`OrtSynthesizer`), and each graph is run at a warmed length, then at lengths it has never seen, then at the
warmed length again. If a new length cost more than a seen one (a per-shape compile or plan), padding inputs to a
few fixed lengths ("buckets") would pay; if not, buckets only add the padded frames' work.

    python bench/bench_shapes.py [--repeats 3] [--json bench/results/shapes.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per length (the first of a new length is timed apart)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch = C.setup_torch()
    import numpy as np

    from svc_pl.infer.loading import load_voice_model
    from svc_pl.infer.onnx_backend import OrtSynthesizer

    rows, out = [], {"graphs": {}, "env": C.environment()}
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = C.make_default_model(Path(tmp))
        synth = load_voice_model(model).net
        ort_synth = OrtSynthesizer(synth, cache=Path(tmp) / "cache", threads=C.THREADS).prepare()
        rng = np.random.default_rng(0)

        def prior_feeds(t):
            return {"c": rng.standard_normal((1, synth.ssl_dim, t), dtype=np.float32),
                    "f0": np.full((1, t), 220.0, np.float32), "uv": np.ones((1, t), np.float32),
                    "g": rng.standard_normal((1, synth.gin_channels, t), dtype=np.float32),
                    "noise": rng.standard_normal((1, synth.enc_p.out_channels, t), dtype=np.float32),
                    "noise_scale": np.array(0.35, np.float32)}

        def decoder_feeds(t):
            return {"z": rng.standard_normal((1, synth.enc_p.out_channels, t), dtype=np.float32),
                    "har_source": rng.standard_normal((1, 1, t * synth.hop_length), dtype=np.float32),
                    "g": rng.standard_normal((1, synth.gin_channels, 1), dtype=np.float32)}

        for graph, feeds, warm in (("prior", prior_feeds, 500), ("decoder", decoder_feeds, 256)):
            sess = ort_synth.session(graph)
            names = {i.name for i in sess.get_inputs()}

            def run(t):
                f = {k: v for k, v in feeds(t).items() if k in names}
                t0 = time.perf_counter()
                sess.run(None, f)
                return time.perf_counter() - t0

            run(warm)
            seen = [run(warm) for _ in range(a.repeats)]
            first_new = [run(warm + k) for k in range(1, a.repeats + 1)]  # each length's first run
            again = [run(warm) for _ in range(a.repeats)]
            r = {"warm_frames": warm, "seen_s": statistics.median(seen + again),
                 "first_run_of_new_length_s": statistics.median(first_new)}
            r["new_over_seen"] = r["first_run_of_new_length_s"] / r["seen_s"]
            out["graphs"][graph] = r
            rows.append([graph, warm, r["seen_s"], r["first_run_of_new_length_s"], r["new_over_seen"]])
    C.print_table(["graph", "frames", "seen length (s)", "first run of a new length (s)", "ratio"], rows,
                  title=f"ONNX Runtime, 4.1 default synthesizer, {C.THREADS} threads, {torch.__version__}")
    C.write_json(a.json, out)


if __name__ == "__main__":
    main()
