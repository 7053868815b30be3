"""svc_pl training runs -> so-vits-svc files, without Lightning (``svc-pl export``).

A synthesizer run becomes ``G_<step>.pth``, ``D_<step>.pth`` and ``config.json`` (so-vits-svc 4.1 trains on and
converts with them); a diffusion run becomes ``model_<step>.pt`` and ``diffusion.yaml``. The networks are rebuilt
from the checkpoint's hyper-parameters by the builders the training modules use, so nothing here needs Lightning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from svc_pl.errors import UserFacingError
from svc_pl.run_checkpoint import read_ckpt, segment_frames, state_under

PathLike = str | os.PathLike

# SVCModule's defaults for the training settings that config.json records (a checkpoint from before a setting
# existed lacks it); tests/test_compat.py holds them against SVCModule's signature
TRAINING_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-4, "betas": (0.8, 0.99), "eps": 1e-9, "lr_decay": 0.999875, "warmup_epochs": 0,
    "c_mel": 45.0, "c_kl": 1.0, "n_mels": 80, "mel_fmin": 0.0, "mel_fmax": None, "discriminator_width": 1.0,
    "use_discriminator": True,
}


def export_checkpoint(ckpt_path: PathLike, out_dir: PathLike, speech_encoder: str | None = None) -> dict[str, Path]:
    """Export the ``.ckpt`` of an ``svc-pl fit`` run into ``out_dir``, whichever model it trained.

    Returns the files written by kind: ``G``, ``D``, ``config`` (a synthesizer run) or ``model``, ``config`` (a
    diffusion run). ``speech_encoder``: written to ``config.json`` (default: the dataset's content encoder).
    """
    hp = read_ckpt(ckpt_path).get("hyper_parameters")
    if hp and "diffusion" in hp:
        model, config = export_diffusion_checkpoint(ckpt_path, out_dir)
        return {"model": model, "config": config}
    return export_synthesizer_checkpoint(ckpt_path, out_dir, speech_encoder)


# ------------------------------------------------------------------------------------------------ synthesizer

def export_synthesizer_checkpoint(ckpt_path: PathLike, out_dir: PathLike,
                                  speech_encoder: str | None = None) -> dict[str, Path]:
    """``G_<step>.pth``, ``D_<step>.pth`` and ``config.json`` from a synthesizer run's ``.ckpt``."""
    from svc_pl.compat.checkpoint import load_state_into
    from svc_pl.layers.discriminator import MultiPeriodDiscriminator
    from svc_pl.synthesizer import Synthesizer

    ckpt = read_ckpt(ckpt_path)  # weights_only: nothing in the file runs
    hp = ckpt.get("hyper_parameters")
    if not hp or "net" not in hp or "dataset_info" not in hp:
        raise UserFacingError(f"{ckpt_path}: not an svc_pl training checkpoint (no model hyper-parameters)")
    hp = TRAINING_DEFAULTS | dict(hp)
    net = Synthesizer.from_config(hp["net"], hp["dataset_info"], segment_frames(hp))
    load_state_into(net, state_under(ckpt["state_dict"], "net."), str(ckpt_path))
    disc = None
    if hp["use_discriminator"]:
        disc = MultiPeriodDiscriminator(width=hp["discriminator_width"])
        load_state_into(disc, state_under(ckpt["state_dict"], "disc."), str(ckpt_path))
    return export_synthesizer(net, disc, hp, out_dir, speech_encoder=speech_encoder,
                              global_step=int(ckpt.get("global_step", 0)), epoch=int(ckpt.get("epoch", 0)))


def export_synthesizer(net: nn.Module, disc: nn.Module | None, hparams: dict[str, Any], out_dir: PathLike, *,
                       speech_encoder: str | None = None, global_step: int = 0, epoch: int = 0) -> dict[str, Path]:
    """Write ``G_<step>.pth``, ``D_<step>.pth`` and ``config.json`` that so-vits-svc 4.1 loads.

    Args:
        net, disc: the synthesizer and its multi-period discriminator (weight norm not folded).
        hparams: the run's hyper-parameters (``net``, ``dataset_info``, ``segment_frames`` and the training
            settings config.json records: learning rate, betas, eps, lr_decay, loss weights, mel settings).
        global_step, epoch: the training position; ``<step>`` is ``global_step // 2`` (two optimizer steps per
            batch), the learning rate written is the one reached at ``epoch``.
    """
    from svc_pl.compat import save_sovits, save_sovits_discriminator, sovits_config_for, write_json_atomic
    from svc_pl.synthesizer import synthesizer_kwargs

    if getattr(net, "decoder", "nsf-hifigan") != "nsf-hifigan" or disc is None:
        raise UserFacingError("this model uses the DDSP decoder (or no discriminator), which so-vits-svc has no "
                              "format for: use the .ckpt with svc-pl infer")
    hp = TRAINING_DEFAULTS | dict(hparams)
    out = Path(out_dir)
    info = hp["dataset_info"]
    hop = int(info["hop_length"])
    frames = segment_frames(hp)
    kwargs = synthesizer_kwargs(dict(hp["net"]), info, frames)
    cfg = sovits_config_for(kwargs, dict(info["speakers"]), hop_length=hop, filter_length=int(info["filter_length"]),
                            win_length=int(info["win_length"]), n_mel_channels=hp["n_mels"], mel_fmin=hp["mel_fmin"],
                            mel_fmax=hp["mel_fmax"], segment_size_samples=frames * hop,
                            speech_encoder=speech_encoder or info["content_encoder"],
                            unit_interpolate_mode=info["unit_interpolate_mode"])
    cfg.train.update(learning_rate=hp["learning_rate"], betas=list(hp["betas"]), eps=hp["eps"],
                     lr_decay=hp["lr_decay"], c_mel=hp["c_mel"], c_kl=hp["c_kl"], warmup_epochs=hp["warmup_epochs"])
    step = int(global_step // 2)
    paths = {"G": out / f"G_{step}.pth", "D": out / f"D_{step}.pth", "config": out / "config.json"}
    lr = hp["learning_rate"] * hp["lr_decay"] ** max(0, epoch)
    save_sovits(net, paths["G"], iteration=step, learning_rate=lr)
    save_sovits_discriminator(disc, paths["D"], iteration=step, learning_rate=lr)
    write_json_atomic(paths["config"], cfg.to_dict())
    return paths


# ------------------------------------------------------------------------------------------------ diffusion

def export_diffusion_checkpoint(ckpt_path: PathLike, out_dir: PathLike) -> tuple[Path, Path]:
    """so-vits-svc ``model_<step>.pt`` + ``diffusion.yaml`` from a diffusion run's ``.ckpt``
    (``svc-pl fit --config diffusion``)."""
    from svc_pl.compat.checkpoint import load_state_into
    from svc_pl.diffusion.model import DiffusionConfig

    ckpt = read_ckpt(ckpt_path)
    hp = dict(ckpt.get("hyper_parameters") or {})
    if "diffusion" not in hp or "dataset_info" not in hp:
        raise UserFacingError(f"{ckpt_path}: not a diffusion training checkpoint (no model.diffusion settings)")
    info = hp["dataset_info"]
    model = DiffusionConfig.from_dict(hp["diffusion"]).build(int(info["unit_dim"]), int(info["n_speakers"]),
                                                             int(hp.get("n_mels", 128)))
    load_state_into(model, state_under(ckpt["state_dict"], "model."), str(ckpt_path))
    return export_diffusion(model, info, out_dir, global_step=int(ckpt.get("global_step", 0)))


def export_diffusion(model: nn.Module, dataset_info: dict[str, Any], out_dir: PathLike, *,
                     global_step: int = 0) -> tuple[Path, Path]:
    """Write ``model_<step>.pt`` and ``diffusion.yaml`` in so-vits-svc's format into ``out_dir``, with the
    speakers, rate, hop, encoder and unit interpolation of ``dataset_info``."""
    from svc_pl.compat.diffusion import save_sovits_diffusion

    out = Path(out_dir)
    model_path, config_path = out / f"model_{global_step}.pt", out / "diffusion.yaml"
    save_sovits_diffusion(model, model_path, config_path, global_step=global_step, speakers=dataset_info["speakers"],
                          sampling_rate=int(dataset_info["sampling_rate"]), block_size=int(dataset_info["hop_length"]),
                          encoder=str(dataset_info["content_encoder"]),
                          unit_interpolate_mode=str(dataset_info["unit_interpolate_mode"]))
    return model_path, config_path
