"""Export a voice model's synthesizer to ONNX (dynamic batch and frame length).

The graph takes the random draws of a conversion as inputs (prior noise, source phases and noise),
so it is deterministic; see svc_pl.infer.onnx_export for the input layout.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help="so-vits-svc G_*.pth or svc_pl .ckpt")
    p.add_argument("-c", "--config", help="so-vits-svc config.json (default: beside the model)")
    p.add_argument("-o", "--output", required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument(
        "--speaker-mix",
        action="store_true",
        help="take (B, n_speakers) float mix weights as 'sid' instead of int64 speaker ids",
    )


def run(args: argparse.Namespace) -> int:
    from svc_pl.infer.loading import load_voice_model
    from svc_pl.infer.onnx_export import export_onnx

    vm = load_voice_model(args.model, args.config)
    path = export_onnx(vm.net, args.output, opset=args.opset, speaker_mix=args.speaker_mix)
    print(
        f"onnx: {path} ({vm.sampling_rate} Hz, hop {vm.hop_length}, speakers: "
        f"{', '.join(sorted(vm.speakers, key=vm.speakers.get)) or vm.net.n_speakers})"
    )
    return 0
