"""Pretrained bases shipped inside the package, addressable by name (``--model.init_from tiny-base``).

A base is a safetensors file (no pickle: nothing in it can run code) holding the generator's weights
(fp16 where that is lossless enough for fine-tuning) and, in its metadata, the JSON of the model and
dataset settings it was trained with. Its model card (``<name>.md`` beside it) gives the recipe and the
measured figures. ``scripts/train_base.py`` makes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
PRETRAINED = {"tiny-base": "tiny-base.safetensors"}  # name -> file in this folder; its config is svc_pl/configs/tiny


def pretrained_path(name: str) -> Path | None:
    """The file of a shipped base, or None if ``name`` is not a base's name."""
    if name not in PRETRAINED:
        return None
    path = HERE / PRETRAINED[name]
    if not path.is_file():
        from svc_pl.errors import UserFacingError

        raise UserFacingError(f"{name}: the base's weights ({path}) are missing from this installation; "
                              "reinstall svc_pl or run scripts/train_base.py to make them")
    return path


def save_base(state: dict[str, torch.Tensor], path: str | os.PathLike, meta: dict[str, Any],
              dtype: torch.dtype = torch.float16) -> Path:
    """Write ``state`` (floating tensors cast to ``dtype``) and ``meta`` (JSON) atomically as safetensors."""
    from safetensors.torch import save_file

    from svc_pl.io import atomic_path

    path = Path(path)
    tensors = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in meta.items()})
    return path


def load_base(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(float32 state dict, metadata) of a base file."""
    from safetensors import safe_open

    from svc_pl.errors import UserFacingError

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise UserFacingError(f"{path}: not a readable svc_pl base ({type(exc).__name__}: {exc})") from exc
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, meta


def load_base_synthesizer(name_or_path: str | os.PathLike):
    """A shipped base (by name) or a base file as a :class:`~svc_pl.synthesizer.Synthesizer` in eval mode, built
    from the settings in its metadata by :meth:`~svc_pl.synthesizer.Synthesizer.from_config`.

    Returns:
        (synthesizer, metadata): the metadata holds ``net``, ``dataset_info`` (speakers, sample rate, hop,
        content encoder) and the training figures.
    """
    from svc_pl.compat.checkpoint import load_state_into
    from svc_pl.errors import UserFacingError
    from svc_pl.synthesizer import Synthesizer

    path = pretrained_path(str(name_or_path)) or Path(name_or_path)
    state, meta = load_base(path)
    if "net" not in meta or "dataset_info" not in meta:
        raise UserFacingError(f"{path}: no model settings in its metadata (net, dataset_info): not an svc_pl base")
    net = Synthesizer.from_config(meta["net"], meta["dataset_info"])
    load_state_into(net, state, str(path))
    return net.eval(), meta


def write_base_ckpt(path: str | os.PathLike, name_or_path: str | os.PathLike = "tiny-base") -> Path:
    """A minimal svc_pl checkpoint of a base (by name or file), so ``svc-pl infer`` and ``Converter`` use it."""
    import yaml

    from svc_pl.configs import shipped_configs

    state, meta = load_base(pretrained_path(str(name_or_path)) or Path(name_or_path))
    if "segment_frames" not in meta:  # a base written before its metadata held it: its config's value
        config = yaml.safe_load(shipped_configs()[meta.get("config", "tiny")].read_text(encoding="utf-8"))
        meta["segment_frames"] = int(config["model"]["segment_frames"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hparams = {"net": meta["net"], "dataset_info": meta["dataset_info"], "segment_frames": meta["segment_frames"]}
    torch.save({"state_dict": {f"net.{k}": v for k, v in state.items()}, "hyper_parameters": hparams,
                "global_step": meta.get("global_step", 0), "epoch": meta.get("epoch", 0)}, path)
    return path
