"""so-vits-svc compatibility: load and write upstream checkpoints and configs.

Public API (other tools call these by name):

- :func:`load_sovits` (``G_*.pth`` + ``config.json`` -> :class:`~svc_pl.synthesizer.Synthesizer` in eval mode)
- :func:`save_sovits` (synthesizer -> ``G_*.pth`` in upstream layout)
- :func:`load_sovits_discriminator` / :func:`save_sovits_discriminator` (``D_*.pth``)
"""

from __future__ import annotations

import logging
import os

import torch

from svc_pl.compat.checkpoint import (
    from_sovits_state_dict,
    load_state_into,
    read_checkpoint,
    to_sovits_state_dict,
)
from svc_pl.compat.config import SovitsConfig, read_sovits_config, sovits_config_for
from svc_pl.compat.diffusion import load_sovits_diffusion, save_sovits_diffusion  # noqa: F401  (public API)
from svc_pl.errors import CheckpointMismatchError
from svc_pl.io import save_torch_atomic, write_json_atomic  # write_json_atomic: long part of this API

LOG = logging.getLogger(__name__)

__all__ = [
    "SovitsConfig", "read_sovits_config", "sovits_config_for", "write_json_atomic", "load_sovits", "save_sovits",
    "load_sovits_discriminator", "save_sovits_discriminator", "load_sovits_weights", "to_sovits_state_dict",
    "from_sovits_state_dict",
]


def load_sovits_weights(model, model_path: str | os.PathLike, *, finetune: bool = False) -> dict:
    """Load a so-vits-svc ``G_*.pth`` into an existing synthesizer.

    Strict: every tensor must be present and of the right shape, except the posterior encoder
    (``enc_q.*``), which release checkpoints drop and inference never uses. With ``finetune=True``
    (starting from a pretrained base such as ``G_0.pth``) a speaker table of another size is
    re-initialised, and a warning says so. Returns the checkpoint dict (iteration, optimizer, ...).
    """
    ckpt = read_checkpoint(model_path)
    reinit = ("emb_g.",) if finetune else ()
    try:
        left = load_state_into(model, ckpt["model"], str(model_path), allow_missing_prefixes=("enc_q.",),
                               reinit_prefixes=reinit)
    except CheckpointMismatchError as err:
        if not finetune and any(m.startswith("emb_g.") for m in err.mismatched) and len(err.mismatched) == 1:
            err.args = (err.args[0] + "\n  Only the speaker table differs: to fine-tune a pretrained base on other "
                        "speakers, load it in fine-tune mode (finetune=True / --model.init_from with fine-tuning).",)
        raise
    if any(k.startswith("emb_g.") for k in left) or (finetune and model.emb_g.weight.shape[0] != _rows(ckpt)):
        LOG.warning("%s: speaker table has %s rows, the model %d: re-initialised emb_g for fine-tuning",
                    model_path, _rows(ckpt), model.emb_g.weight.shape[0])
    if any(k.startswith("enc_q.") for k in left):
        LOG.info("%s has no posterior encoder (enc_q): a release checkpoint; fine for inference", model_path)
    return ckpt


def _rows(ckpt) -> int | None:
    w = ckpt["model"].get("emb_g.weight")
    return None if w is None else int(w.shape[0])


def load_sovits(model_path: str | os.PathLike, config_path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Build the synthesizer described by a so-vits-svc ``config.json`` and load ``G_*.pth`` into it.

    Returns the :class:`~svc_pl.synthesizer.Synthesizer` in eval mode on ``device`` (weight norm kept,
    so it can be saved again or fine-tuned; call ``prepare_for_inference()`` to fold it). The parsed
    config is attached as ``model.sovits_config``.
    """
    cfg = read_sovits_config(config_path)
    model = cfg.build()
    load_sovits_weights(model, model_path)
    model.sovits_config = cfg
    return model.to(device).eval()


def save_sovits(model, path: str | os.PathLike, *, iteration: int = 0, optimizer=None,
                learning_rate: float = 1e-4) -> None:
    """Write ``model`` as a so-vits-svc ``G_*.pth``: ``{"model", "iteration", "optimizer", "learning_rate"}``.

    ``optimizer`` may be a torch optimizer or its state dict (parameter order matches upstream's, so
    upstream resumes from it); None writes None, which upstream's loader accepts. Written atomically.
    """
    _check_unfolded(model, path)
    opt_state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    save_torch_atomic({"model": to_sovits_state_dict(model), "iteration": int(iteration), "optimizer": opt_state,
                       "learning_rate": float(learning_rate)}, path)


def load_sovits_discriminator(model_path: str | os.PathLike, device: str | torch.device = "cpu",
                              use_spectral_norm: bool = False, width: float | None = None):
    """Build a :class:`~svc_pl.layers.discriminator.MultiPeriodDiscriminator` and load ``D_*.pth`` into it.

    ``width``: its channel scale; None reads it from the file (1.0 for so-vits-svc's own, less for the narrower
    discriminators svc_pl's small configs train and export)."""
    from svc_pl.layers.discriminator import MultiPeriodDiscriminator

    ckpt = read_checkpoint(model_path)
    if width is None:
        width = discriminator_width(ckpt["model"])
    disc = MultiPeriodDiscriminator(use_spectral_norm=use_spectral_norm, width=width)
    load_state_into(disc, ckpt["model"], str(model_path))
    return disc.to(device)


def discriminator_width(state: dict[str, torch.Tensor]) -> float:
    """The channel scale of a multi-period discriminator's state dict: its first period discriminator's first
    convolution has 32 x width output channels (1.0 when the key is absent: the load then lists what is wrong)."""
    for key in ("discriminators.1.convs.0.weight_v", "discriminators.1.convs.0.weight_orig"):
        if key in state:
            return state[key].shape[0] / 32
    return 1.0


def save_sovits_discriminator(disc, path: str | os.PathLike, *, iteration: int = 0, optimizer=None,
                              learning_rate: float = 1e-4) -> None:
    """Write the discriminator as a so-vits-svc ``D_*.pth``, atomically."""
    _check_unfolded(disc, path)
    opt_state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    save_torch_atomic({"model": to_sovits_state_dict(disc), "iteration": int(iteration), "optimizer": opt_state,
                       "learning_rate": float(learning_rate)}, path)


def _check_unfolded(model, path) -> None:
    from torch.nn.utils import parametrize

    if not any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ValueError(f"{path}: this model had its weight norm folded (prepare_for_inference); so-vits-svc "
                         "checkpoints store weight_g/weight_v: save the model before folding it")
