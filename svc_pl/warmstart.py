"""Warm start: the weights a new training run starts from (``--model.init_from``, ``--model.init_discriminator_from``).

One loader for every source a run may start from, whichever network it trains:

- :func:`generator`: a shipped base (``tiny-base``, checked against the run's settings), an svc_pl run's ``.ckpt``
  (its ``net.*``) or a so-vits-svc ``G_*.pth``;
- :func:`discriminator`: a so-vits-svc ``D_*.pth`` or an svc_pl run's ``.ckpt`` (its ``disc.*``);
- :func:`diffusion`: a so-vits-svc diffusion ``model_*.pt`` or an svc_pl diffusion run's ``.ckpt`` (its ``model.*``).

Every read is weights-only; a speaker table of another size starts at the mean speaker of the table it replaces
(a shipped base's or a run's; a so-vits-svc ``G_*.pth``'s keeps the new run's initial values); any other tensor
that does not fit stops the run with every mismatch listed and what to do. The LightningModules call these from
their constructors and hold nothing of it themselves.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from svc_pl.compat.checkpoint import load_state_into, read_checkpoint
from svc_pl.errors import CheckpointMismatchError, UserFacingError
from svc_pl.run_checkpoint import read_ckpt, state_under

LOG = logging.getLogger(__name__)

PathLike = str | os.PathLike


def _is_base(path: PathLike) -> bool:
    from svc_pl.pretrained import pretrained_path

    return pretrained_path(str(path)) is not None or str(path).endswith(".safetensors")


def _is_run(path: PathLike) -> bool:
    return str(path).endswith(".ckpt")


# ------------------------------------------------------------------------------------------------ generator

def source_sampling_rate(net: dict[str, Any], init_from: str, data_rate: int) -> int | None:
    """``net.source_sampling_rate`` for a run that starts from ``init_from``: the rate its generator was trained
    with (None when that is the data's), so fine-tuning keeps the source the weights learned; a rate the run's
    config sets explicitly wins, with a warning when it differs."""
    given = net.get("source_sampling_rate")
    trained = _trained_source_rate(init_from) if net.get("decoder") == "nsf-hifigan" else None
    if trained is None:
        return given
    rate, where = trained
    if given is not None:
        if int(given) != rate:
            LOG.warning("%s was trained with its NSF source at %d Hz (%s) but model.net.source_sampling_rate is %d: "
                        "fine-tuning with the config's", init_from, rate, where, int(given))
        return given
    if rate != data_rate:
        LOG.info("%s: NSF source at %d Hz (%s), not the data's %d Hz: kept for fine-tuning and export",
                 init_from, rate, where, data_rate)
        return rate
    return None


def _trained_source_rate(path: str) -> tuple[int, str] | None:
    """The NSF source rate the generator in ``path`` was trained with, and where that was read; None for the
    shipped bases (``.safetensors``), whose settings are checked against the run's when they load.

    A so-vits-svc ``G_*.pth``: its ``config.json`` (beside it, where upstream's training keeps it), else
    so-vits-svc's default 44100 Hz. An svc_pl ``.ckpt``: its ``net.source_sampling_rate``, else its data's rate.
    """
    from svc_pl.compat.config import UPSTREAM_SOURCE_RATE, read_sovits_config

    if _is_base(path):
        return None
    if _is_run(path):
        hp = read_ckpt(path).get("hyper_parameters") or {}
        rate = (hp.get("net") or {}).get("source_sampling_rate") or (hp.get("dataset_info") or {}).get("sampling_rate")
        return (int(rate), f"{path}'s hyper-parameters") if rate else None
    config = Path(path).with_name("config.json")
    if config.is_file():
        return read_sovits_config(config).source_sampling_rate, str(config)
    return UPSTREAM_SOURCE_RATE, "so-vits-svc's default: no config.json beside it"


def generator(net: nn.Module, path: PathLike, settings: dict[str, Any], dataset_info: dict[str, Any]) -> None:
    """Start the synthesizer ``net`` (built from ``settings``, a ``model.net`` mapping, for ``dataset_info``) from a
    shipped base, an svc_pl ``.ckpt`` or a so-vits-svc ``G_*.pth``; a speaker table of another size is
    re-initialised (a base's or a run's to its mean speaker)."""
    if _is_base(path):
        _from_base(net, path, settings, dataset_info)
    elif _is_run(path):
        state = state_under(read_ckpt(path)["state_dict"], "net.")
        left = _load_with_advice(net, state, path, _same_run_advice("--model.init_from", "model.net settings"),
                                 reinit_prefixes=("emb_g.",))
        if any(k.startswith("emb_g.") for k in left):
            _speakers_at_mean(net, state["emb_g.weight"])
            LOG.warning("%s: speaker table has %d rows, this dataset %d speakers: the new table starts at the "
                        "run's mean speaker", path, state["emb_g.weight"].shape[0], net.emb_g.weight.shape[0])
    else:
        from svc_pl.compat import load_sovits_weights

        load_sovits_weights(net, path, finetune=True)
    LOG.info("generator initialised from %s", path)


def _from_base(net: nn.Module, path: PathLike, settings: dict[str, Any], info: dict[str, Any]) -> None:
    """A shipped base (by name or file): its settings must be the run's, its speakers may differ."""
    from svc_pl.pretrained import load_base, pretrained_path
    from svc_pl.synthesizer import NetConfig

    state, meta = load_base(pretrained_path(str(path)) or path)
    # both with the defaults filled in: a setting that a base older than it lacks is that base's default
    have = asdict(NetConfig.from_dict(meta.get("net", {}), strict=False))
    want = asdict(NetConfig.from_dict(settings, strict=False))
    differ = sorted(k for k in have if have[k] != want[k])
    if differ:
        raise UserFacingError(f"{path}: the base was trained with other model settings ({', '.join(differ)}); "
                              "fine-tune it with its own config (--config tiny for tiny-base)")
    base_info = meta.get("dataset_info", {})
    base_rate = (int(base_info.get("sampling_rate", 0)), int(base_info.get("hop_length", 0)))
    our_rate = (int(info["sampling_rate"]), int(info["hop_length"]))
    if 0 not in base_rate and base_rate != our_rate:
        raise UserFacingError(
            f"{path}: the base is a {base_rate[0]} Hz / hop {base_rate[1]} model but this dataset is "
            f"{our_rate[0]} Hz / hop {our_rate[1]}: preprocess with --sampling-rate {base_rate[0]} "
            f"--hop-length {base_rate[1]}, or train without the base")
    if int(base_info.get("unit_dim", net.ssl_dim)) != net.ssl_dim:
        raise UserFacingError(
            f"{path}: the base takes {meta['dataset_info']['unit_dim']}-d units "
            f"({meta['dataset_info'].get('content_encoder')}) but this dataset has {net.ssl_dim}-d units: "
            "preprocess with the base's encoder (--encoder whisper-ppg --content-encoder whisper-tiny.en)")
    base_window, our_window = dict(base_info.get("unit_window") or {}), dict(info.get("unit_window") or {})
    if base_window != our_window:
        from svc_pl.data.unit_window import UnitWindow

        flag = UnitWindow.from_dict(base_window).spec if base_window else "off"
        raise UserFacingError(
            f"{path}: the base was trained on units made {_window_words(base_window)} but this dataset's "
            f"units are made {_window_words(our_window)}: preprocess again with --unit-window {flag}")
    load_state_into(net, state, str(path), reinit_prefixes=("emb_g.",))
    table = state.get("emb_g.weight")
    if table is not None and table.shape != net.emb_g.weight.shape:
        _speakers_at_mean(net, table)
        LOG.info("speaker table re-initialised to the base's mean speaker (%d -> %d speakers)",
                 table.shape[0], net.emb_g.weight.shape[0])


def _speakers_at_mean(net: nn.Module, table: torch.Tensor) -> None:
    """Start every row of ``net``'s speaker table at the loaded ``table``'s average voice, each a little apart (a
    tenth of the table's spread per dimension, seeded): a random vector is far from any voice the network learned,
    and a fine-tune's few hundred steps do not bring it home."""
    table = table.float()
    spread = table.std(0) if table.shape[0] > 1 else table.abs().mean(0)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(net.emb_g.weight.shape, generator=gen) * spread * 0.1
        net.emb_g.weight.copy_(table.mean(0, keepdim=True) + noise)


def _window_words(window: dict[str, int]) -> str:
    if not window:
        return "from whole clips"
    return (f"in windows of {window['window_frames']} frames, {window['chunk_frames']} at a time with "
            f"{window['lookahead_frames']} of look-ahead")


# ------------------------------------------------------------------------------------------------ discriminator

def discriminator(disc: nn.Module | None, path: PathLike, width: float) -> None:
    """Start the multi-period discriminator ``disc`` (of channel scale ``width``) from a so-vits-svc ``D_*.pth`` or
    the ``disc.*`` weights of an svc_pl ``.ckpt``; either must have its width. ``disc`` None: the model trains
    without one, and the option is refused."""
    if disc is None:
        raise UserFacingError(f"{path}: --model.init_discriminator_from was given but this model trains without "
                              "a discriminator (model.use_discriminator: false); drop the option")
    if _is_run(path):
        state = state_under(read_ckpt(path)["state_dict"], "disc.")
        if not state:
            raise UserFacingError(f"{path}: that run trained without a discriminator (no disc.* weights); drop "
                                  "--model.init_discriminator_from")
        advice = _same_run_advice("--model.init_discriminator_from", "model.discriminator_width")
    else:
        state = read_checkpoint(path)["model"]
        advice = (f"--model.init_discriminator_from takes a D_*.pth of this model's discriminator width "
                  f"({width}; so-vits-svc's are 1.0): set --model.discriminator_width to the file's")
    _load_with_advice(disc, state, path, advice)
    LOG.info("discriminator initialised from %s", path)


# ------------------------------------------------------------------------------------------------ diffusion

def diffusion(model: nn.Module, path: PathLike) -> None:
    """Start the diffusion model from a so-vits-svc ``model_*.pt`` or the ``model.*`` weights of an svc_pl
    ``.ckpt``; a speaker table of another size keeps its initial values, with a warning."""
    from svc_pl.compat.diffusion import read_diffusion_checkpoint

    if _is_run(path):
        state = state_under(read_ckpt(path)["state_dict"], "model.")
    else:
        state = read_diffusion_checkpoint(path)["model"]
    left = load_state_into(model, state, str(path), allow_missing_prefixes=("spk_embed.",),
                           reinit_prefixes=("spk_embed.",))
    if left:
        LOG.warning("%s: %s kept their initial values (speaker table of another size)", path, ", ".join(left))
    LOG.info("initialised the diffusion model from %s", path)


# ------------------------------------------------------------------------------------------------ helpers

def _load_with_advice(module: nn.Module, state: dict[str, torch.Tensor], path: PathLike, advice: str,
                      reinit_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Load ``state`` into ``module`` (tables under ``reinit_prefixes`` of another size keep their initial values);
    returns the keys left at their initial values. A mismatch lists every tensor, then ``advice``."""
    try:
        return load_state_into(module, state, str(path), reinit_prefixes=reinit_prefixes)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(err.path, err.missing, err.unexpected, err.mismatched, f"  {advice}") from None


def _same_run_advice(option: str, settings: str) -> str:
    return (f"{option} takes a run of the same {settings}: train with that run's config.yaml (beside its "
            "checkpoints/ folder) or drop the option")
