"""Export a trained svc_pl checkpoint as so-vits-svc G_<step>.pth, D_<step>.pth and config.json,
for use in so-vits-svc and the tools built on it."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="svc_pl Lightning checkpoint (.ckpt)")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--speech-encoder", default=None,
                   help="speech_encoder written to config.json (default: the dataset's content encoder)")


def run(args: argparse.Namespace) -> int:
    from svc_pl.lightning.module import SVCModule

    model = SVCModule.load_from_checkpoint(args.ckpt, map_location="cpu", init_from=None,
                                           init_discriminator_from=None, weights_only=False)
    paths = model.export_sovits(args.output, speech_encoder=args.speech_encoder)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
