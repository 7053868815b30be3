"""Content (speech-unit) encoders: 16 kHz audio -> one unit vector per 20 ms, as so-vits-svc 4.1 feeds them.

All three are HuBERT-base networks run by torchaudio's ``wav2vec2_model`` (no fairseq needed):

=============  ===========================================================  ====
name           what so-vits-svc takes                                        dim
=============  ===========================================================  ====
``vec768l12``  ContentVec, output of transformer layer 12 (no final norm)   768
``vec256l9``   ContentVec, output of layer 9 through ``final_proj``          256
``hubertsoft`` bshall's HuBERT-Soft, all 12 layers through ``proj``          256
=============  ===========================================================  ====

With ``layer_norm_first=False`` (HuBERT/ContentVec base) the encoder's layer norm sits *before* the
transformer layers, so a layer's output is used as is; fairseq's ``extract_features(output_layer=n)`` and
torchaudio's ``extract_features(num_layers=n)[-1]`` agree. HuBERT-Soft pads 40 samples on each side
first, giving ``T // 320`` frames; the ContentVec encoders give ``(T - 400) // 320 + 1``.

Accepted weight files (``load_content_encoder`` detects which):

* Hugging Face directory: ``config.json`` + ``model.safetensors`` or ``pytorch_model.bin`` with
  ``transformers.HubertModel`` key names, plus ``final_proj.*`` for vec256l9 (lengyue233/content-vec-best).
* fairseq checkpoint, e.g. ContentVec's ``checkpoint_best_legacy_500.pt``.
* bshall HuBERT-Soft checkpoint, e.g. ``hubert-soft-0d54a1f4.pt``.

Pickled files are read with ``content_fairseq.read_torch_pickle``: foreign classes are never imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from svc_pl.data.content_fairseq import (
    POS_CONV_G,
    POS_CONV_V,
    HubertArch,
    bshall_to_torchaudio,
    fairseq_to_torchaudio,
    read_torch_pickle,
)
from svc_pl.errors import CheckpointMismatchError, ConfigError, UserFacingError
from svc_pl.layers.fast_init import constant_init

LOG = logging.getLogger(__name__)

# so-vits-svc's speech encoder name -> the unit dimension of its released weights (the ``ssl_dim`` so-vits-svc
# writes; Whisper: medium.pt and large-v2/v3, another size gives its own dimension)
ENCODERS = {"vec768l12": 768, "vec256l9": 256, "hubertsoft": 256, "whisper-ppg": 1024, "whisper-ppg-large": 1280}
WHISPER_ENCODERS = ("whisper-ppg", "whisper-ppg-large")
_OUTPUT_LAYER = {"vec768l12": 12, "vec256l9": 9, "hubertsoft": None}  # None: all layers
_USES_PROJ = {"vec768l12": False, "vec256l9": True, "hubertsoft": True}
SAMPLE_RATE = 16000
HOP = 320

LAYOUTS_HINT = (
    "Expected one of:\n"
    "  - a Hugging Face directory with config.json and model.safetensors or pytorch_model.bin "
    "(transformers HubertModel keys, plus final_proj.* for vec256l9), e.g. lengyue233/content-vec-best;\n"
    "  - a fairseq checkpoint (dict with 'model' and 'cfg'/'args'), e.g. ContentVec's "
    "checkpoint_best_legacy_500.pt, for vec768l12 / vec256l9;\n"
    "  - a bshall HuBERT-Soft checkpoint, e.g. hubert-soft-0d54a1f4.pt, for hubertsoft;\n"
    "  - for whisper-ppg / whisper-ppg-large: an OpenAI Whisper checkpoint (medium.pt, large-v3.pt), a "
    "CTranslate2/faster-whisper folder, or the short name whisper-tiny.en."
)


class ContentWeightsError(UserFacingError, FileNotFoundError):
    """A content-encoder weight path is missing, unreadable, or in no layout we know."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else str(path)
        super().__init__(f"{path}: {reason}\n{LAYOUTS_HINT}")


class ContentEncoder(nn.Module):
    """A frozen HuBERT-family network that turns 16 kHz audio into speech units.

    The network stays in eval mode (no dropout) even inside a module put in training mode, and its
    parameters do not require grad: units are features, never trained here.

    Attributes:
        name: one of ``ENCODERS``.
        dim: unit dimension (``ENCODERS[name]`` for the released weights).
        sample_rate: 16000. hop: 320 samples (20 ms) per unit frame.
    """

    sample_rate = SAMPLE_RATE
    hop = HOP

    def __init__(self, name: str, model: nn.Module, proj: nn.Linear | None, output_layer: int | None,
                 pad: int = 0):
        super().__init__()
        self.name = name
        self.model = model
        self.proj = proj
        self.pad = pad
        layers = model.encoder.transformer.layers
        self.num_layers = len(layers) if output_layer is None else output_layer
        del layers[self.num_layers:]  # layers past the one we read are never run
        embed_dim = model.encoder.feature_projection.projection.out_features
        self.dim = proj.out_features if proj is not None else embed_dim
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ContentEncoder:
        """Kept for the nn.Module API; the encoder always stays in eval mode."""
        return super().train(False)

    def forward(self, wav16k: torch.Tensor) -> torch.Tensor:
        """Encode audio.

        Args:
            wav16k: (B, T) float waveform at 16 kHz, all items full length (no padding mask).

        Returns:
            (B, dim, frames) units; frames = (T - 400) // 320 + 1 for ContentVec, T // 320 for HuBERT-Soft.
        """
        if wav16k.dim() != 2:
            raise ValueError(f"ContentEncoder expects (B, T) audio at 16 kHz, got {tuple(wav16k.shape)}")
        if self.pad:
            wav16k = F.pad(wav16k, (self.pad, self.pad))
        if wav16k.shape[-1] < 400:
            raise ValueError(f"audio too short for {self.name}: {wav16k.shape[-1]} samples, "
                             "need at least 400 (25 ms at 16 kHz)")
        layers, _ = self.model.extract_features(wav16k, num_layers=self.num_layers)
        units = layers[-1]
        if self.proj is not None:
            units = self.proj(units)
        return units.transpose(1, 2)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dim={self.dim}, layers={self.num_layers}"


def _check_name(name: str) -> None:
    if name not in ENCODERS:
        raise ConfigError(f"unknown content encoder {name!r}; choose one of {sorted(ENCODERS)}")


def _assemble(name: str, arch: HubertArch, state: Mapping[str, torch.Tensor] | None, path: str,
              unplaced: list[str]) -> ContentEncoder:
    """Build ``name``'s encoder of shape ``arch``; load ``state`` (torchaudio keys + ``proj.*``) strictly."""
    if _USES_PROJ[name] and not arch.proj_dim:
        raise ContentWeightsError(path, f"{name} needs the 256-d projection head (final_proj / proj), "
                                        "which these weights do not have")
    wanted = _OUTPUT_LAYER[name]
    if wanted is not None and arch.num_layers < wanted:
        reason = f"{name} reads transformer layer {wanted}; these weights have only {arch.num_layers} layers"
        raise ContentWeightsError(path, reason)
    # with weights to load, every tensor is replaced at once (the load below is strict): no random draws first
    with constant_init() if state is not None else contextlib.nullcontext():
        model = arch.build()
        proj = nn.Linear(arch.embed_dim, arch.proj_dim) if _USES_PROJ[name] else None
    if state is not None:
        expected = dict(model.state_dict())
        if proj is not None:
            expected.update({f"proj.{k}": v for k, v in proj.state_dict().items()})
        ignored = {"proj.weight", "proj.bias"} if proj is None else set()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(unplaced + [k for k in state if k not in expected and k not in ignored])
        mismatched = sorted(f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)}"
                            for k, v in expected.items() if k in state and state[k].shape != v.shape)
        if missing or unexpected or mismatched:
            raise CheckpointMismatchError(path, missing, unexpected, mismatched, hint=LAYOUTS_HINT)
        model.load_state_dict({k: state[k] for k in model.state_dict()})
        if proj is not None:
            proj.load_state_dict({"weight": state["proj.weight"], "bias": state["proj.bias"]})
    encoder = ContentEncoder(name, model, proj, wanted, pad=40 if name == "hubertsoft" else 0)
    if encoder.dim != ENCODERS[name]:
        LOG.warning("%s: %s gives %d-d units, not the %d of the released weights", path, name, encoder.dim,
                    ENCODERS[name])
    return encoder


def random_content_encoder(name: str, seed: int = 0) -> ContentEncoder:
    """A HuBERT-base-shaped encoder with FIXED RANDOM weights, for demos and tests only.

    Its units carry no linguistic content: a model trained on them learns nothing useful. Shapes, frame
    counts and speed match the real encoder. The global RNG state is left untouched. For the Whisper
    names the network is a Whisper-tiny-shaped encoder (384-d units).
    """
    _check_name(name)
    if name in WHISPER_ENCODERS:
        from svc_pl.data.whisper import WhisperAudioEncoder, WhisperContentEncoder, WhisperDims

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return WhisperContentEncoder(name, WhisperAudioEncoder(WhisperDims()))
    arch = HubertArch(proj_dim=256 if _USES_PROJ[name] else 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _assemble(name, arch, None, f"<random {name} seed={seed}>", [])


def load_content_encoder(name: str, path: str | Path | None, device: str | torch.device = "cpu"
                         ) -> ContentEncoder:
    """Load ``name``'s encoder from ``path`` in any layout listed in the module docstring.

    Args:
        name: one of ``ENCODERS``.
        path: weight file or Hugging Face directory. ``None`` is an error (there are no built-in weights;
            use ``random_content_encoder`` for tests).
        device: where to put the encoder.

    Raises:
        ConfigError: unknown ``name``.
        ContentWeightsError: missing path, unreadable file, unknown layout, or weights for another encoder.
        CheckpointMismatchError: the tensors do not fit the architecture (lists them).
    """
    _check_name(name)
    if path is None:
        raise ContentWeightsError(None, f"no weight path given for content encoder {name!r}")
    from svc_pl.data.whisper import BUILTIN_WEIGHTS, WhisperWeightsError, is_whisper_weights, load_whisper_encoder

    if name in WHISPER_ENCODERS:
        try:
            return load_whisper_encoder(path, name=name, device=device)
        except WhisperWeightsError as exc:
            raise ContentWeightsError(path, str(exc).split("\n")[0].removeprefix(f"{path}: ")) from exc
    path = Path(path)
    if str(path) in BUILTIN_WEIGHTS or (path.is_dir() and is_whisper_weights(path)):
        layout = "whisper"  # a CTranslate2 folder or a short name: checked before reading it as HuBERT
    elif not path.exists():
        raise ContentWeightsError(path, "does not exist")
    elif path.is_dir():
        arch, state, unplaced = _read_hf_dir(path)
        layout = "hf"
    else:
        layout, arch, state, unplaced = _read_pickle_layout(path)
    if layout == "whisper":
        raise ContentWeightsError(path, f"holds Whisper weights, which cannot serve as {name!r}: "
                                        "use --encoder whisper-ppg")
    if (layout == "bshall") != (name == "hubertsoft"):
        what = "a HuBERT-Soft checkpoint" if layout == "bshall" else "ContentVec/HuBERT weights"
        raise ContentWeightsError(path, f"holds {what}, which cannot serve as {name!r}")
    LOG.info("loading %s content encoder from %s (%s layout)", name, path, layout)
    return _assemble(name, arch, state, str(path), unplaced).to(device)


def _read_pickle_layout(path: Path) -> tuple[str, HubertArch | None, dict[str, torch.Tensor], list[str]]:
    try:
        obj = read_torch_pickle(path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        reason = f"cannot be read as a torch checkpoint ({type(exc).__name__}: {exc})"
        raise ContentWeightsError(path, reason) from exc
    if isinstance(obj, Mapping) and "dims" in obj and isinstance(obj.get("model_state_dict"), Mapping):
        return "whisper", None, {}, []  # an OpenAI Whisper checkpoint (the caller says which encoder to use)
    try:
        if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping) and _tensor_dict(obj["model"]):
            if any(k.startswith("encoder.layers.") and ".self_attn." in k for k in obj["model"]):
                return ("fairseq", *fairseq_to_torchaudio(obj))
        state = obj.get("hubert", obj) if isinstance(obj, Mapping) else None
        if isinstance(state, Mapping) and _tensor_dict(state):
            state = {k.removeprefix("module."): v for k, v in state.items()}
            if "feature_extractor.conv0.weight" in state:
                return ("bshall", *bshall_to_torchaudio(state))
    except ValueError as exc:
        raise ContentWeightsError(path, f"unusable architecture: {exc}") from exc
    found = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise ContentWeightsError(path, f"is a torch file but not a known content-encoder layout (found {found})")


def _tensor_dict(d: Mapping[Any, Any]) -> bool:
    return len(d) > 0 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def _read_hf_dir(path: Path) -> tuple[HubertArch, dict[str, torch.Tensor], list[str]]:
    """Architecture from ``config.json``, tensors renamed from transformers' HubertModel keys."""
    config_path = path / "config.json"
    weights = [path / "model.safetensors", path / "pytorch_model.bin"]
    weights = [w for w in weights if w.is_file()]
    if not config_path.is_file() or not weights:
        raise ContentWeightsError(
            path, "is a directory without config.json and model.safetensors or pytorch_model.bin")
    try:
        cfg = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ContentWeightsError(config_path, f"is not valid JSON ({exc})") from exc
    arch = _arch_from_hf_config(cfg, config_path)
    if weights[0].suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw = load_file(str(weights[0]))
        except (SafetensorError, OSError) as exc:
            raise ContentWeightsError(weights[0], f"cannot be read as safetensors ({exc})") from exc
    else:
        try:
            raw = read_torch_pickle(weights[0])
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
            raise ContentWeightsError(weights[0], f"cannot be read as a torch checkpoint ({exc})") from exc
        if not isinstance(raw, Mapping) or not _tensor_dict(raw):
            raise ContentWeightsError(weights[0], "is not a state dict of tensors")
    state, unplaced = {}, []
    for key, value in raw.items():
        key = key.removeprefix("hubert.")
        if key == "masked_spec_embed":
            continue
        if key.startswith("final_proj."):
            state["proj." + key.removeprefix("final_proj.")] = value
        elif key.startswith("feature_extractor."):
            state[key] = value
        elif key.startswith("feature_projection."):
            state["encoder." + key] = value
        elif key in ("encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv_embed.conv.weight_v"):
            state[POS_CONV_G if key.endswith("_g") else POS_CONV_V] = value
        elif key.startswith("encoder."):
            state["encoder.transformer." + key.removeprefix("encoder.")] = value
        else:
            unplaced.append(key)
    if "proj.weight" in state:
        arch.proj_dim = int(state["proj.weight"].shape[0])
    return arch, state, unplaced


def _arch_from_hf_config(cfg: Mapping[str, Any], config_path: Path) -> HubertArch:
    def need(key: str) -> Any:
        if key not in cfg:
            raise ConfigError(f"{config_path}: missing {key!r}; expected a transformers HubertConfig")
        return cfg[key]

    supported = {"hidden_act": "gelu", "feat_extract_activation": "gelu", "feat_proj_layer_norm": True,
                 "conv_pos_batch_norm": False}
    unsupported = [f"{k}={cfg[k]!r}" for k, ok in supported.items() if k in cfg and cfg[k] != ok]
    if unsupported:
        raise ConfigError(f"{config_path}: unsupported HuBERT variant ({', '.join(unsupported)})")
    conv = [need("conv_dim"), need("conv_kernel"), need("conv_stride")]
    if len({len(c) for c in conv}) != 1:
        raise ConfigError(f"{config_path}: conv_dim, conv_kernel and conv_stride differ in length")
    layers = list(zip(*conv, strict=True))
    return HubertArch(
        embed_dim=int(need("hidden_size")), num_layers=int(need("num_hidden_layers")),
        num_heads=int(need("num_attention_heads")), ff_dim=int(need("intermediate_size")),
        conv_layers=[tuple(int(v) for v in t) for t in layers], conv_bias=bool(cfg.get("conv_bias", False)),
        extractor_mode=f"{cfg.get('feat_extract_norm', 'group')}_norm",
        pos_conv_kernel=int(need("num_conv_pos_embeddings")),
        pos_conv_groups=int(need("num_conv_pos_embedding_groups")),
        layer_norm_first=bool(cfg.get("do_stable_layer_norm", False)),
    )


def units_to_frames(units: torch.Tensor, n_frames: int, mode: Literal["nearest", "left", "linear"] = "nearest"
                    ) -> torch.Tensor:
    """Stretch units to ``n_frames`` F0/spectrogram frames, as so-vits-svc's ``unit_interpolate_mode``.

    ``"nearest"``/``"linear"`` are ``F.interpolate`` (upstream's ``repeat_expand_2d`` for those modes);
    ``"left"`` is upstream's default loop: frame i takes unit ``floor(i * T_u / n_frames)`` when stretching,
    and advances at most one unit per frame when shrinking.

    Args:
        units: (B, D, T_u).
        n_frames: target length.

    Returns:
        (B, D, n_frames), same dtype as ``units``.
    """
    if units.dim() != 3:
        raise ValueError(f"units_to_frames expects (B, D, T_u), got shape {tuple(units.shape)}")
    src = units.shape[-1]
    if mode == "left":
        return units[..., _left_indices(src, n_frames).to(units.device)]
    if mode in ("nearest", "linear"):
        return F.interpolate(units, size=n_frames, mode=mode)
    raise ConfigError(f"unknown unit_interpolate_mode {mode!r}; choose 'nearest', 'left' or 'linear'")


def _left_indices(src: int, target: int) -> torch.Tensor:
    # (target,) long: the unit each frame copies under upstream's "left" rule, float32 boundaries included
    bounds = torch.arange(src + 1) * target / src  # frame positions where unit k starts, float32 as upstream
    if target >= src:  # boundaries at least one frame apart: a frame's unit is the count of boundaries <= it
        return torch.searchsorted(bounds[1:], torch.arange(target, dtype=bounds.dtype), right=True)
    idx, pos, edges = [], 0, bounds.tolist()
    for i in range(target):
        if i >= edges[pos + 1]:
            pos += 1
        idx.append(pos)
    return torch.tensor(idx, dtype=torch.long)
