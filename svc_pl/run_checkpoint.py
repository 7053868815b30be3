"""The ``.ckpt`` that ``svc-pl fit`` writes, read without Lightning: ``{"state_dict", "hyper_parameters",
"global_step", "epoch", ...}``, its tensors named by the module that holds them (``net.*`` and ``disc.*`` for the
synthesizer's run, ``model.*`` for the diffusion model's). Resume, warm start, export and inference all read it here.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from svc_pl.errors import UserFacingError
from svc_pl.io import read_weights

_CORRUPT = (". It is truncated or corrupt; resume from another checkpoint in the same folder (--ckpt_path PATH) or "
            "delete it.")


def read_ckpt(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read an svc_pl training ``.ckpt`` weights-only (:func:`svc_pl.io.read_weights`): nothing in the file can run.

    Raises :class:`~svc_pl.errors.UnsafeCheckpointError` for a file that pickles other objects (code), and
    :class:`~svc_pl.errors.UserFacingError` naming the file when it is missing, truncated, corrupt or not a
    training checkpoint.
    """
    ckpt = read_weights(path, what="checkpoint", corrupt=_CORRUPT, map_location=map_location)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserFacingError(f"{path}: not an svc_pl training checkpoint (no state_dict); pass the .ckpt that "
                              "svc-pl fit wrote, or a so-vits-svc G_*.pth with its config.json")
    return ckpt


def state_under(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of one sub-module of a run's ``state_dict``, named as inside it: ``state_under(sd, "net.")``."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def segment_frames(hparams: dict[str, Any]) -> int:
    """The training segment in frames from a checkpoint's hyper-parameters (older ones give it in samples)."""
    if hparams.get("segment_frames"):
        return int(hparams["segment_frames"])
    return int(hparams.get("segment_size") or 10240) // int(hparams["dataset_info"]["hop_length"])
