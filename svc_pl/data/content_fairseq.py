"""Reading HuBERT/ContentVec checkpoints pickled by fairseq and bshall/hubert, without their code.

A fairseq checkpoint (``checkpoint_best_legacy_500.pt``) is a torch pickle whose config objects are
instances of fairseq, omegaconf and argparse classes. fairseq does not install on current Python, and
unpickling foreign classes would run their code anyway. ``read_torch_pickle`` therefore resolves only a
short list of tensor-rebuilding functions and plain containers; every other class or function the pickle
names becomes an ``InertObject`` that merely records what it was given. ``find_setting`` then reads
plain values (heads, conv strides, ...) out of those records.

The ``*_to_torchaudio`` functions rename a state dict onto ``torchaudio.models.wav2vec2_model``
key names (plus ``proj.*`` for the 256-d projection head) and return the architecture the tensors imply.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torchaudio.models import wav2vec2_model

from svc_pl.io import InertObject, read_torch_pickle  # noqa: F401  (read_torch_pickle: svc_pl.data.content's)

# (out channels, kernel, stride) of the wav2vec 2.0 / HuBERT convolutional front end: 20 ms hop at 16 kHz.
STANDARD_CONV_LAYERS = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
_STRIDE_OF_KERNEL = {10: 5, 3: 2, 2: 2}

POS_CONV_G = "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0"
POS_CONV_V = "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"


@dataclass
class HubertArch:
    """The shape of a torchaudio ``wav2vec2_model`` (group/layer-norm front end, post/pre-norm encoder)."""

    embed_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ff_dim: int = 3072
    conv_layers: list[tuple[int, int, int]] = field(default_factory=lambda: list(STANDARD_CONV_LAYERS))
    conv_bias: bool = False
    extractor_mode: str = "group_norm"
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_first: bool = False
    proj_dim: int = 0  # 0: no projection head

    def build(self) -> torch.nn.Module:
        """A torchaudio ``Wav2Vec2Model`` of this shape with its default initialisation."""
        return wav2vec2_model(
            extractor_mode=self.extractor_mode,
            extractor_conv_layer_config=[tuple(c) for c in self.conv_layers],
            extractor_conv_bias=self.conv_bias, encoder_embed_dim=self.embed_dim,
            encoder_projection_dropout=0.0, encoder_pos_conv_kernel=self.pos_conv_kernel,
            encoder_pos_conv_groups=self.pos_conv_groups, encoder_num_layers=self.num_layers,
            encoder_num_heads=self.num_heads, encoder_attention_dropout=0.0,
            encoder_ff_interm_features=self.ff_dim, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0,
            encoder_layer_norm_first=self.layer_norm_first, encoder_layer_drop=0.0, aux_num_out=None,
        )


# ---------------------------------------------------------------------------------------------------------
# svc_pl.io.read_torch_pickle (the one restricted unpickler, in its inert mode) reads fairseq checkpoints;
# find_setting walks the InertObject records it leaves.


def find_setting(root: Any, name: str, max_nodes: int = 100_000) -> Any | None:
    """The first plain value stored under key or attribute ``name`` anywhere in ``root`` (breadth first).

    Understands dicts, lists, ``InertObject`` records of argparse ``Namespace``s and omegaconf
    ``DictConfig``s (whose leaves keep their value in ``_val``). Returns None if absent.
    """
    queue, seen = deque([root]), set()
    while queue and len(seen) < max_nodes:
        node = queue.popleft()
        if id(node) in seen or isinstance(node, torch.Tensor):
            continue
        seen.add(id(node))
        if isinstance(node, InertObject):
            queue.extend([node.state, node.items, node.elements, node.args])
        elif isinstance(node, Mapping):
            if name in node:
                value = _unwrap(node[name])
                if isinstance(value, (bool, int, float, str)):
                    return value
            queue.extend(v for k, v in node.items() if k != "_parent")
        elif isinstance(node, (list, tuple)):
            queue.extend(node)
    return None


def _unwrap(value: Any) -> Any:
    # omegaconf ValueNode: the value lives in its state's "_val"
    while isinstance(value, InertObject) and isinstance(value.state, Mapping) and "_val" in value.state:
        value = value.state["_val"]
    return value


def parse_conv_layers(text: str) -> list[tuple[int, int, int]]:
    """Evaluate fairseq's ``conv_feature_layers`` string, e.g. ``"[(512,10,5)] + [(512,3,2)] * 4"``.

    Only list/tuple literals of integers joined by ``+`` and ``*`` are accepted (no names, no calls).

    Raises:
        ValueError: anything else.
    """

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = ev(node.left), ev(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(f"unsupported expression in conv_feature_layers: {ast.dump(node)}")

    layers = ev(ast.parse(text, mode="eval"))
    if not (isinstance(layers, list) and all(isinstance(t, tuple) and len(t) == 3 for t in layers)):
        raise ValueError(f"conv_feature_layers is not a list of (dim, kernel, stride): {text!r}")
    return [tuple(int(v) for v in t) for t in layers]


# ---------------------------------------------------------------------------------------------------------
# State-dict renaming


def _conv_front_end(state: Mapping[str, torch.Tensor], weight_key: str, strides: list[int] | None
                    ) -> list[tuple[int, int, int]]:
    """(out, kernel, stride) per conv layer of weights ``weight_key.format(i)``; strides: config or kernel."""
    layers = []
    i = 0
    while weight_key.format(i) in state:
        out_ch, _, kernel = state[weight_key.format(i)].shape
        layers.append((int(out_ch), int(kernel), 0))
        i += 1
    if strides is not None and len(strides) == len(layers):
        return [(c, k, s) for (c, k, _), s in zip(layers, strides, strict=True)]
    if any(k not in _STRIDE_OF_KERNEL for _, k, _ in layers):
        kernels = [k for _, k, _ in layers]
        raise ValueError(f"non-standard conv kernels {kernels} and no conv_feature_layers setting")
    return [(c, k, _STRIDE_OF_KERNEL[k]) for c, k, _ in layers]


_FE, _LAYER = "feature_extractor.conv_layers.", r"encoder.transformer.layers.\1."
_FAIRSEQ_RULES = [  # (fairseq key regex, torchaudio key template)
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", _FE + r"\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", _FE + r"0.layer_norm.\1"),  # group norm
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", _FE + r"\1.layer_norm.\2"),  # layer norm
    (r"layer_norm\.(weight|bias)", r"encoder.feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"encoder.feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.bias", "encoder.transformer.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.(weight_g|parametrizations\.weight\.original0)", POS_CONV_G),
    (r"encoder\.pos_conv\.0\.(weight_v|parametrizations\.weight\.original1)", POS_CONV_V),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.transformer.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", _LAYER + r"attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", _LAYER + r"layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", _LAYER + r"feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", _LAYER + r"feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", _LAYER + r"final_layer_norm.\2"),
    (r"final_proj\.(weight|bias)", r"proj.\1"),
]

_BSHALL_NAMES = {  # bshall key -> torchaudio key, outside the conv stack and the layers
    "positional_embedding.conv.bias": "encoder.transformer.pos_conv_embed.conv.bias",
    "positional_embedding.conv.weight_g": POS_CONV_G,
    "positional_embedding.conv.weight_v": POS_CONV_V,
    "positional_embedding.conv.parametrizations.weight.original0": POS_CONV_G,
    "positional_embedding.conv.parametrizations.weight.original1": POS_CONV_V,
    "norm.weight": "encoder.transformer.layer_norm.weight",
    "norm.bias": "encoder.transformer.layer_norm.bias",
    "proj.weight": "proj.weight",
    "proj.bias": "proj.bias",
}
_BSHALL_LAYER_PARTS = {  # nn.TransformerEncoderLayer part -> torchaudio EncoderLayer part
    "self_attn.out_proj": "attention.out_proj", "linear1": "feed_forward.intermediate_dense",
    "linear2": "feed_forward.output_dense", "norm1": "layer_norm", "norm2": "final_layer_norm",
}


Converted = tuple[HubertArch, dict[str, torch.Tensor], list[str]]


def fairseq_to_torchaudio(checkpoint: Mapping[str, Any]) -> Converted:
    """Rename a fairseq HuBERT/ContentVec checkpoint onto torchaudio keys.

    Args:
        checkpoint: the unpickled dict: ``"model"`` (state dict), ``"cfg"``/``"args"`` (config records).

    Returns:
        (architecture, renamed tensors, keys we could not place). Training-only tensors (``mask_emb``,
        ``label_embs_concat``) are dropped; ``final_proj`` becomes ``proj``.
    """
    state = {k: v for k, v in checkpoint["model"].items()}
    config = {"cfg": checkpoint.get("cfg"), "args": checkpoint.get("args")}
    conv_text = find_setting(config, "conv_feature_layers")
    strides = [s for _, _, s in parse_conv_layers(conv_text)] if isinstance(conv_text, str) else None
    out: dict[str, torch.Tensor] = {}
    unplaced: list[str] = []
    for key, value in state.items():
        if key in ("mask_emb", "label_embs_concat"):
            continue
        for pattern, target in _FAIRSEQ_RULES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, target, key)] = value
                break
        else:
            unplaced.append(key)

    arch = _arch_from_renamed(out, strides=strides)
    heads = find_setting(config, "encoder_attention_heads")
    arch.num_heads = int(heads) if isinstance(heads, int) else max(1, arch.embed_dim // 64)
    norm_first = find_setting(config, "layer_norm_first")
    arch.layer_norm_first = bool(norm_first) if isinstance(norm_first, bool) else False
    return arch, out, unplaced


def bshall_to_torchaudio(state: Mapping[str, torch.Tensor]) -> Converted:
    """Rename a bshall/hubert ``HubertSoft`` state dict (``hubert-soft-0d54a1f4.pt``) onto torchaudio keys.

    Its encoder layers are ``torch.nn.TransformerEncoderLayer`` (post-norm, fused q/k/v), 12 heads.

    Returns:
        (architecture, renamed tensors, keys we could not place); ``masked_spec_embed`` and
        ``label_embedding`` (training only) are dropped.
    """
    out: dict[str, torch.Tensor] = {}
    unplaced: list[str] = []
    for key, value in state.items():
        if key in ("masked_spec_embed", "label_embedding.weight"):
            continue
        m = re.fullmatch(r"feature_extractor\.conv(\d+)\.weight", key)
        if m:
            out[f"feature_extractor.conv_layers.{m[1]}.conv.weight"] = value
            continue
        m = re.fullmatch(r"feature_extractor\.norm0\.(weight|bias)", key)
        if m:
            out[f"feature_extractor.conv_layers.0.layer_norm.{m[1]}"] = value
            continue
        m = re.fullmatch(r"feature_projection\.(norm|projection)\.(weight|bias)", key)
        if m:
            part = "layer_norm" if m[1] == "norm" else "projection"
            out[f"encoder.feature_projection.{part}.{m[2]}"] = value
            continue
        if key in _BSHALL_NAMES:
            out[_BSHALL_NAMES[key]] = value
            continue
        m = re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", key)
        if m:  # fused q, k, v (in that order)
            for name, chunk in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[f"encoder.transformer.layers.{m[1]}.attention.{name}_proj.{m[2]}"] = chunk.contiguous()
            continue
        m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if m and m[2] in _BSHALL_LAYER_PARTS:
            out[f"encoder.transformer.layers.{m[1]}.{_BSHALL_LAYER_PARTS[m[2]]}.{m[3]}"] = value
            continue
        unplaced.append(key)
    arch = _arch_from_renamed(out, strides=None)
    arch.num_heads = 12  # fixed in bshall/hubert's model definition
    return arch, out, unplaced


def _arch_from_renamed(state: Mapping[str, torch.Tensor], strides: list[int] | None) -> HubertArch:
    """What the tensor shapes of a renamed state dict reveal (heads and norm order they do not)."""
    arch = HubertArch()
    arch.conv_layers = _conv_front_end(state, "feature_extractor.conv_layers.{}.conv.weight", strides)
    arch.conv_bias = "feature_extractor.conv_layers.0.conv.bias" in state
    per_layer_norm = "feature_extractor.conv_layers.1.layer_norm.weight" in state
    arch.extractor_mode = "layer_norm" if per_layer_norm else "group_norm"
    if "encoder.feature_projection.projection.weight" in state:
        arch.embed_dim = int(state["encoder.feature_projection.projection.weight"].shape[0])
    arch.num_layers = len({k.split(".")[3] for k in state if k.startswith("encoder.transformer.layers.")})
    ff = state.get("encoder.transformer.layers.0.feed_forward.intermediate_dense.weight")
    if ff is not None:
        arch.ff_dim = int(ff.shape[0])
    if POS_CONV_V in state:
        channels, per_group, kernel = state[POS_CONV_V].shape
        arch.pos_conv_kernel, arch.pos_conv_groups = int(kernel), int(channels // per_group)
    if "proj.weight" in state:
        arch.proj_dim = int(state["proj.weight"].shape[0])
    return arch
