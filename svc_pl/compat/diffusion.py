"""so-vits-svc 4.1 diffusion checkpoints (``logs/44k/diffusion/model_*.pt`` + ``diffusion.yaml``) <-> MelDiffusion.

Upstream saves ``{"global_step": int, "model": state_dict[, "optimizer": state_dict]}``; the model's sizes live in
the yaml (``data.encoder_out_channels``, ``model.n_layers/n_chans/n_hidden/n_spk/use_pitch_aug/timesteps/
k_step_max``), the mel size is the vocoder's (read here from the checkpoint's tensors).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from svc_pl.compat.checkpoint import load_state_into
from svc_pl.diffusion.model import MelDiffusion
from svc_pl.errors import CheckpointMismatchError, ConfigError, UserFacingError
from svc_pl.io import read_weights, save_torch_atomic, write_text_atomic

LOG = logging.getLogger(__name__)

_MODEL_KEYS = ("n_layers", "n_chans", "n_hidden", "n_spk")
# diffusion_template.yaml of so-vits-svc 4.1 (the parts conversion and training read), for writing a yaml
TEMPLATE: dict[str, Any] = {
    "data": {"sampling_rate": 44100, "block_size": 512, "duration": 2, "encoder": "vec768l12",
             "cnhubertsoft_gate": 10, "encoder_sample_rate": 16000, "encoder_hop_size": 320,
             "encoder_out_channels": 768, "training_files": "filelists/train.txt",
             "validation_files": "filelists/val.txt", "extensions": ["wav"], "unit_interpolate_mode": "nearest"},
    "model": {"type": "Diffusion", "n_layers": 20, "n_chans": 512, "n_hidden": 256, "use_pitch_aug": True,
              "timesteps": 1000, "k_step_max": 0, "n_spk": 1},
    "device": "cuda",
    "vocoder": {"type": "nsf-hifigan", "ckpt": "pretrain/nsf_hifigan/model"},
    "infer": {"speedup": 10, "method": "dpm-solver++"},
    "env": {"expdir": "logs/44k/diffusion", "gpu_id": 0},
    "train": {"num_workers": 4, "amp_dtype": "fp32", "batch_size": 48, "cache_all_data": True,
              "cache_device": "cpu", "cache_fp16": True, "epochs": 100000, "interval_log": 10,
              "interval_val": 2000, "interval_force_save": 5000, "lr": 0.0001, "decay_step": 100000,
              "gamma": 0.5, "weight_decay": 0, "save_opt": False},
    "spk": {"nyaru": 0},
}


@dataclass
class SovitsDiffusionConfig:
    """A parsed ``diffusion.yaml``: the raw mapping plus what svc_pl reads from it."""

    raw: dict[str, Any]
    path: str = ""
    speakers: dict[str, int] = field(default_factory=dict)

    @property
    def sampling_rate(self) -> int:
        return int(self.raw.get("data", {}).get("sampling_rate", 44100))

    @property
    def hop_length(self) -> int:
        return int(self.raw.get("data", {}).get("block_size", 512))

    @property
    def encoder(self) -> str:
        return str(self.raw.get("data", {}).get("encoder", "vec768l12"))

    def model_kwargs(self, n_mels: int = 128) -> dict[str, Any]:
        """:class:`~svc_pl.diffusion.model.MelDiffusion` arguments."""
        data, model = self.raw.get("data", {}), self.raw.get("model", {})
        timesteps = int(model.get("timesteps") or 1000)
        k_max = int(model.get("k_step_max") or 0)
        return {"unit_dim": int(data["encoder_out_channels"]), "n_speakers": int(model["n_spk"] or 1),
                "use_pitch_aug": bool(model.get("use_pitch_aug", False)), "n_mels": n_mels,
                "n_layers": int(model["n_layers"]), "n_chans": int(model["n_chans"]),
                "n_hidden": int(model["n_hidden"]), "timesteps": timesteps,
                "k_step_max": k_max if 0 < k_max < timesteps else 0}


def read_diffusion_config(path: str | os.PathLike) -> SovitsDiffusionConfig:
    """Parse a so-vits-svc ``diffusion.yaml`` (safe YAML), checking the keys the model needs."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: diffusion config not found (so-vits-svc writes it as configs/diffusion.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a readable YAML file ({err})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict) or not isinstance(raw.get("data"), dict):
        raise ConfigError(f"{path}: not a so-vits-svc diffusion config (needs 'data' and 'model' sections)")
    missing = [f"model.{k}" for k in _MODEL_KEYS if k not in raw["model"]]
    missing += [] if "encoder_out_channels" in raw["data"] else ["data.encoder_out_channels"]
    if missing:
        raise ConfigError(f"{path}: missing {', '.join(missing)}; copy them from the diffusion.yaml the model was "
                          "trained with")
    speakers = {str(k): int(v) for k, v in (raw.get("spk") or {}).items()}
    return SovitsDiffusionConfig(raw=raw, path=str(path), speakers=speakers)


def read_diffusion_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A diffusion ``model_*.pt`` read weights-only (:func:`svc_pl.io.read_weights`); nothing in the file can run.

    Raises :class:`~svc_pl.errors.UnsafeCheckpointError` for a file that pickles code or other objects,
    :class:`~svc_pl.errors.UserFacingError` for a missing, corrupt or foreign file.
    """
    ckpt = read_weights(path, what="diffusion checkpoint")
    if isinstance(ckpt, dict) and "model" not in ckpt and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        ckpt = {"model": ckpt}  # a bare state dict
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise UserFacingError(f"{path}: no 'model' state dict: not a so-vits-svc diffusion checkpoint (model_*.pt)")
    return ckpt


def load_sovits_diffusion(model_path: str | os.PathLike, config_path: str | os.PathLike,
                          device: str | torch.device = "cpu") -> MelDiffusion:
    """Build the diffusion model a so-vits-svc ``diffusion.yaml`` describes and load ``model_*.pt`` into it, strictly.

    Returns :class:`~svc_pl.diffusion.model.MelDiffusion` in eval mode on ``device``; its ``infer(units, f0,
    volume, speaker, gt_mel=None, k_step=100, method="dpm-solver++", speedup=10)`` gives mels. The parsed config is
    attached as ``model.sovits_config`` (speakers, sampling rate, hop length, encoder, default sampler).
    """
    cfg = read_diffusion_config(config_path)
    ckpt = read_diffusion_checkpoint(model_path)
    proj = ckpt["model"].get("decoder.denoise_fn.input_projection.weight")
    n_mels = int(proj.shape[1]) if torch.is_tensor(proj) and proj.dim() == 3 else 128
    try:
        model = MelDiffusion(**cfg.model_kwargs(n_mels))
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{config_path}: cannot build the diffusion model from it ({err})") from None
    try:
        load_state_into(model, ckpt["model"], str(model_path))
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(err.path, err.missing, err.unexpected, err.mismatched,
                                      hint=f"  Check that {config_path} is the diffusion.yaml this checkpoint was "
                                           "trained with (n_layers, n_chans, n_hidden, n_spk, use_pitch_aug, "
                                           "timesteps, encoder_out_channels).") from None
    model.sovits_config = cfg
    LOG.info("%s: diffusion model, %d layers, %d speakers, k_step_max %d", model_path,
             len(model.decoder.denoise_fn.residual_layers), model.n_speakers, model.k_step_max)
    return model.to(device).eval()


def diffusion_config_for(model: MelDiffusion, base: dict[str, Any] | None = None,
                         speakers: dict[str, int] | None = None, **data: Any) -> dict[str, Any]:
    """A ``diffusion.yaml`` mapping describing ``model``: ``base`` (default: upstream's template) with the model
    section, ``data.encoder_out_channels``, ``spk`` and any ``data`` keys given (sampling_rate, block_size,
    encoder, ...) replaced."""
    import copy

    cfg = copy.deepcopy(base if base is not None else TEMPLATE)
    den = model.decoder.denoise_fn
    cfg.setdefault("model", {}).update({
        "n_layers": len(den.residual_layers), "n_chans": den.n_chans,
        "n_hidden": model.unit_embed.out_features, "use_pitch_aug": model.aug_shift_embed is not None,
        "timesteps": model.timesteps, "k_step_max": model.k_step_max if model.shallow_only else 0,
        "n_spk": model.n_speakers})
    cfg.setdefault("data", {}).update({"encoder_out_channels": model.unit_dim, **data})
    if speakers is not None:
        cfg["spk"] = dict(speakers)
    return cfg


def save_sovits_diffusion(model: MelDiffusion, path: str | os.PathLike, config_path: str | os.PathLike | None = None,
                          *, global_step: int = 0, optimizer=None, speakers: dict[str, int] | None = None,
                          **data: Any) -> None:
    """Write ``model`` as a so-vits-svc diffusion ``model_*.pt`` (and its ``diffusion.yaml`` at ``config_path``).

    Upstream loads both as is. The yaml starts from the config the model was loaded with (if any) or upstream's
    template; ``speakers`` and ``data`` keys (``sampling_rate``, ``block_size``, ``encoder``, ...) override it.
    Both files are written atomically.
    """
    ckpt: dict[str, Any] = {"global_step": int(global_step),
                            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    save_torch_atomic(ckpt, path)
    if config_path is not None:
        loaded = getattr(model, "sovits_config", None)
        base = loaded.raw if isinstance(loaded, SovitsDiffusionConfig) else None
        if speakers is None and base is None:
            speakers = {f"speaker{i}": i for i in range(model.n_speakers)}
        write_text_atomic(Path(config_path),
                          yaml.safe_dump(diffusion_config_for(model, base, speakers, **data), sort_keys=False))
