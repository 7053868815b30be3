"""Export a trained svc_pl checkpoint as so-vits-svc G_<step>.pth, D_<step>.pth and config.json (a diffusion
checkpoint from ``svc-pl fit --config diffusion``: model_<step>.pt and diffusion.yaml), for use in so-vits-svc and
the tools built on it. Lightning is not needed: :mod:`svc_pl.compat.export` rebuilds the networks."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="svc_pl Lightning checkpoint (.ckpt)")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--speech-encoder", default=None,
                   help="speech_encoder written to config.json (default: the dataset's content encoder)")


def run(args: argparse.Namespace) -> int:
    from svc_pl.compat.export import export_checkpoint  # no Lightning: the networks' own builders

    paths = export_checkpoint(args.ckpt, args.output, speech_encoder=args.speech_encoder)
    diffusion = "model" in paths
    for kind, path in paths.items():
        print(f"diffusion: {path}" if diffusion else f"{kind}: {path}")
    return 0
