"""so-vits-svc ``G_*.pth``/``D_*.pth`` checkpoints <-> svc_pl modules.

Upstream stores ``{"model": state_dict, "iteration", "optimizer", "learning_rate"}`` with weight-norm
tensors named ``<m>.weight_g``/``<m>.weight_v`` (legacy ``torch.nn.utils.weight_norm``); newer forks
save ``<m>.parametrizations.weight.original0/1``. svc_pl uses the parametrization form internally and
accepts both (and plain folded ``<m>.weight``) on load; it writes the legacy names so every
so-vits-svc version loads what we write.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from svc_pl.errors import CheckpointMismatchError, UserFacingError
from svc_pl.io import read_weights

LOG = logging.getLogger(__name__)

_P0, _P1 = ".parametrizations.weight.original0", ".parametrizations.weight.original1"


def to_sovits_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict with upstream (legacy weight-norm) names, tensors detached on CPU."""
    out = {}
    for key, value in module.state_dict().items():
        if key.endswith(_P0):
            key = key[: -len(_P0)] + ".weight_g"
        elif key.endswith(_P1):
            key = key[: -len(_P1)] + ".weight_v"
        out[key] = value.detach().cpu()
    return out


def _norm_except_dim0(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(w.reshape(w.size(0), -1), dim=1).reshape(-1, *([1] * (w.dim() - 1)))


def from_sovits_state_dict(state: Mapping[str, torch.Tensor], target_keys) -> dict[str, torch.Tensor]:
    """Rename an upstream/fork state dict to our names, given the keys our module expects.

    Legacy ``weight_g``/``weight_v`` and parametrization names map directly; a folded ``weight``
    where we expect weight norm is split into g = ||w|| (per output channel) and v = w.
    """
    target_keys = set(target_keys)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            out[key[: -len(".weight_g")] + _P0] = value
        elif key.endswith(".weight_v"):
            out[key[: -len(".weight_v")] + _P1] = value
        elif key.endswith(".weight") and key not in target_keys and key[: -len(".weight")] + _P1 in target_keys:
            stem = key[: -len(".weight")]
            out[stem + _P0] = _norm_except_dim0(value)
            out[stem + _P1] = value
        else:
            out[key] = value
    return out


def compare_state_dicts(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]):
    """(missing, unexpected, mis-shaped) key listings between a module's state dict and a loaded one."""
    missing = sorted(k for k in expected if k not in given)
    unexpected = sorted(k for k in given if k not in expected)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    )
    return missing, unexpected, mismatched


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A so-vits-svc ``G_*.pth``/``D_*.pth`` read weights-only (:func:`svc_pl.io.read_weights`), with errors that
    name the file; a bare state dict is taken as its ``model``."""
    ckpt = read_weights(path, corrupt="; the file may be truncated or corrupt: download or copy it again")
    if not isinstance(ckpt, dict):
        raise UserFacingError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    if "model" not in ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        ckpt = {"model": ckpt}  # a bare state dict
    if "model" not in ckpt:
        raise UserFacingError(f"{path}: no 'model' entry: not a so-vits-svc G_*.pth/D_*.pth checkpoint "
                              f"(keys: {sorted(ckpt)[:8]})")
    return ckpt


def load_state_into(module: nn.Module, state: Mapping[str, torch.Tensor], path: str, *,
                     allow_missing_prefixes: tuple[str, ...] = (), reinit_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Load an upstream-named state dict into ``module``, strictly.

    Keys under ``allow_missing_prefixes`` may be absent (they keep their initial values);
    keys under ``reinit_prefixes`` keep their initial values when their shape differs.
    Returns the keys that were left at their initial values. Anything else that does not fit
    raises :class:`CheckpointMismatchError` listing every missing, unexpected and mis-shaped tensor.
    """
    expected = module.state_dict()
    given = from_sovits_state_dict(state, expected.keys())
    missing, unexpected, mismatched = compare_state_dicts(expected, given)
    kept = [k for k in missing if k.startswith(allow_missing_prefixes)]
    missing = [k for k in missing if not k.startswith(allow_missing_prefixes)]
    reinit = [m for m in mismatched if m.split(":")[0].startswith(reinit_prefixes)]
    mismatched = [m for m in mismatched if m not in reinit]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(str(path), missing, unexpected, mismatched)
    skip = {m.split(":")[0] for m in reinit} | set(kept)
    load = {k: v for k, v in given.items() if k not in skip}
    result = module.load_state_dict(load, strict=False)
    left = sorted(set(result.missing_keys))
    return left
