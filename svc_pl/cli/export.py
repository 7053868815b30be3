"""Export a trained svc_pl checkpoint as so-vits-svc G_<step>.pth, D_<step>.pth and config.json (a diffusion
checkpoint from ``svc-pl fit --config diffusion``: model_<step>.pt and diffusion.yaml), for use in so-vits-svc and
the tools built on it."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="svc_pl Lightning checkpoint (.ckpt)")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--speech-encoder", default=None,
                   help="speech_encoder written to config.json (default: the dataset's content encoder)")


def run(args: argparse.Namespace) -> int:
    import inspect

    from svc_pl.compat.checkpoint import load_state_into
    from svc_pl.errors import UserFacingError
    from svc_pl.lightning.module import SVCModule
    from svc_pl.run_checkpoint import read_ckpt

    ckpt = read_ckpt(args.ckpt)  # weights_only: nothing in the file runs
    hp = ckpt.get("hyper_parameters")
    if hp and "diffusion" in hp:  # svc-pl fit --config diffusion: model_<step>.pt + diffusion.yaml
        from svc_pl.lightning.diffusion_module import export_checkpoint

        for path in export_checkpoint(args.ckpt, args.output):
            print(f"diffusion: {path}")
        return 0
    if not hp or "net" not in hp or "dataset_info" not in hp:
        raise UserFacingError(f"{args.ckpt}: not an svc_pl training checkpoint (no model hyper-parameters)")
    accepted = inspect.signature(SVCModule.__init__).parameters
    kwargs = {k: v for k, v in hp.items() if k in accepted}  # as load_from_checkpoint: unknown keys are dropped
    kwargs.update(init_from=None, init_discriminator_from=None)  # the weights come from the checkpoint
    model = SVCModule(**kwargs)
    load_state_into(model, ckpt["state_dict"], str(args.ckpt))
    paths = model.export_sovits(args.output, speech_encoder=args.speech_encoder,
                                global_step=int(ckpt.get("global_step", 0)), epoch=int(ckpt.get("epoch", 0)))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
