"""Score a conversion: F0 agreement with the transposed source (cents), voicing agreement, gross errors,
and optionally speaker similarity to a target reference (needs svc_pl[speaker])."""

from __future__ import annotations

import argparse
import math


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="the original recording")
    p.add_argument("converted", help="the converted recording")
    p.add_argument("-t", "--transpose", type=float, default=0.0, help="semitones the conversion was transposed by")
    p.add_argument("--target-reference", metavar="WAV", help="a recording of the target voice (speaker similarity)")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument("--plot", metavar="PNG", help="write the F0 curves as a PNG")
    p.add_argument("--f0", default="fcpe", choices=["pm", "dio", "harvest", "crepe", "fcpe", "rmvpe"])
    p.add_argument("--device", default=None)


def run(args: argparse.Namespace) -> int:
    from svc_pl.compat.config import write_json_atomic
    from svc_pl.data.audio import load_audio
    from svc_pl.evaluate import evaluate_f0, plot_f0, speaker_similarity

    src, sr_s = load_audio(args.source)
    conv, sr_c = load_audio(args.converted)
    result = evaluate_f0(src, conv, sr_s, sr_c, transpose=args.transpose, method=args.f0, device=args.device)
    report = result.to_dict() | {"source": args.source, "converted": args.converted}
    if args.target_reference:
        ref, sr_r = load_audio(args.target_reference)
        report |= speaker_similarity(conv, sr_c, ref, sr_r, src, sr_s) | {"target_reference": args.target_reference}
    rows = [(k, v) for k, v in report.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) and not math.isnan(v) else f"{k:<{width}}  {v}")
    if args.json:
        write_json_atomic(args.json, {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                      for k, v in report.items()})
    if args.plot:
        plot_f0(result, args.plot)
    return 0
