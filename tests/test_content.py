"""Content encoders: parity with transformers' HubertModel, fairseq/bshall checkpoints, unit stretching.

All weights are random and made here: a reduced HuBERT (64-d, 12 layers) saved in the Hugging Face,
fairseq and bshall layouts.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import types

import pytest
import torch
import transformers
from safetensors.torch import save_file
from torch import nn

from svc_pl.data.content import (
    ENCODERS,
    ContentEncoder,
    ContentWeightsError,
    load_content_encoder,
    random_content_encoder,
    units_to_frames,
)
from svc_pl.data.content_fairseq import find_setting, parse_conv_layers
from svc_pl.errors import CheckpointMismatchError, ConfigError

HIDDEN, CONV, HEADS, FF, LAYERS = 64, 32, 4, 128, 12
CONV_SPEC = f"[({CONV},10,5)] + [({CONV},3,2)] * 4 + [({CONV},2,2)] * 2"


def _perturb(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def hf_model():
    """(HubertModel, final_proj): random, in eval mode."""
    torch.manual_seed(0)
    cfg = transformers.HubertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                    intermediate_size=FF, conv_dim=(CONV,) * 7, num_conv_pos_embeddings=16,
                                    num_conv_pos_embedding_groups=4)
    model = transformers.HubertModel(cfg).eval()
    final_proj = nn.Linear(HIDDEN, 256)
    _perturb(model, 1)
    return model, final_proj


@pytest.fixture(scope="module")
def wav():
    return 0.3 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(3))


def _hf_state(hf_model, old_weight_norm: bool) -> dict[str, torch.Tensor]:
    model, final_proj = hf_model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if old_weight_norm:  # pos-conv names of older transformers (and of content-vec-best)
        conv = "encoder.pos_conv_embed.conv."
        state[conv + "weight_g"] = state.pop(conv + "parametrizations.weight.original0")
        state[conv + "weight_v"] = state.pop(conv + "parametrizations.weight.original1")
    state.update({f"final_proj.{k}": v.clone() for k, v in final_proj.state_dict().items()})
    return state


@pytest.fixture(scope="module")
def hf_dirs(hf_model, tmp_path_factory):
    """Two Hugging Face directories: pytorch_model.bin (old weight-norm names) and model.safetensors."""
    model, _ = hf_model
    dirs = {}
    for kind in ("bin", "safetensors"):
        d = tmp_path_factory.mktemp(f"hf_{kind}")
        model.config.to_json_file(str(d / "config.json"))
        if kind == "bin":
            torch.save(_hf_state(hf_model, old_weight_norm=True), d / "pytorch_model.bin")
        else:
            state = {k: v.contiguous() for k, v in _hf_state(hf_model, False).items()}
            save_file(state, str(d / "model.safetensors"))
        dirs[kind] = d
    return dirs


def _reference(hf_model, wav, name):
    model, final_proj = hf_model
    with torch.no_grad():
        hidden = model(wav, output_hidden_states=True).hidden_states
        out = hidden[12] if name == "vec768l12" else final_proj(hidden[9])
    return out.transpose(1, 2)


@pytest.mark.parametrize("kind", ["bin", "safetensors"])
@pytest.mark.parametrize("name", ["vec768l12", "vec256l9"])
def test_hf_layout_matches_transformers(hf_model, hf_dirs, wav, kind, name):
    encoder = load_content_encoder(name, hf_dirs[kind])
    with torch.no_grad():
        units = encoder(wav)
    expected = _reference(hf_model, wav, name)
    dim = HIDDEN if name == "vec768l12" else 256
    assert units.shape == expected.shape == (2, dim, (16000 - 400) // 320 + 1)
    torch.testing.assert_close(units, expected, atol=1e-4, rtol=0)
    assert encoder.dim == units.shape[1] and encoder.sample_rate == 16000 and encoder.hop == 320


# --- fairseq layout -------------------------------------------------------------------------------------

TRAP_CALLS: list[str] = []


def _trap(tag):  # would run if a loader resolved the pickled fairseq globals
    TRAP_CALLS.append(tag)
    return tag


class _Trap:
    def __reduce__(self):
        return _trap, ("config code ran",)


class _Node:  # omegaconf ValueNode look-alike
    def __init__(self, value):
        self._val, self._parent = value, None


class _DictConfig:  # omegaconf DictConfig look-alike: values wrapped in nodes under _content
    def __init__(self, **values):
        self._content = {k: _Node(v) for k, v in values.items()}
        self._parent = None


class _FairseqConfig:
    def __init__(self, **parts):
        self.__dict__.update(parts)


_FAKES = {"fairseq.dataclass.configs": {"FairseqConfig": _FairseqConfig, "_trap": _trap, "Trap": _Trap},
          "omegaconf.dictconfig": {"DictConfig": _DictConfig}, "omegaconf.nodes": {"AnyNode": _Node}}


@contextlib.contextmanager
def fake_foreign_modules():
    """Make the stand-in classes look like fairseq/omegaconf ones, importable only inside this block."""
    saved = {}
    for mod_name, members in _FAKES.items():
        parts = mod_name.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in saved:
                saved[name] = sys.modules.get(name)
                sys.modules[name] = types.ModuleType(name)
        module = sys.modules[mod_name]
        for attr, obj in members.items():
            obj.__module__, obj.__qualname__ = mod_name, attr
            setattr(module, attr, obj)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _to_fairseq_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        k = key
        k = k.replace("feature_extractor.conv_layers.0.layer_norm.", "feature_extractor.conv_layers.0.2.")
        k = k.replace(".conv.weight", ".0.weight") if k.startswith("feature_extractor.") else k
        k = k.replace("feature_projection.layer_norm.", "layer_norm.")
        k = k.replace("feature_projection.projection.", "post_extract_proj.")
        k = k.replace("pos_conv_embed.conv.parametrizations.weight.original0", "pos_conv.0.weight_g")
        k = k.replace("pos_conv_embed.conv.parametrizations.weight.original1", "pos_conv.0.weight_v")
        k = k.replace("encoder.pos_conv_embed.conv.bias", "encoder.pos_conv.0.bias")
        k = k.replace(".attention.", ".self_attn.").replace(".feed_forward.intermediate_dense.", ".fc1.")
        k = k.replace(".feed_forward.output_dense.", ".fc2.")
        if k.startswith("encoder.layers.") and ".layer_norm." in k and "final_layer_norm" not in k:
            k = k.replace(".layer_norm.", ".self_attn_layer_norm.")
        k = "mask_emb" if k == "masked_spec_embed" else k
        out[k] = value
    out["label_embs_concat"] = torch.randn(504, 256)
    return out


def _write_fairseq(path, state, model_cfg=None):
    model_cfg = model_cfg or _DictConfig(_name="hubert", encoder_attention_heads=HEADS,
                                         layer_norm_first=False, conv_feature_layers=CONV_SPEC)
    checkpoint = {"args": None, "cfg": _FairseqConfig(model=model_cfg, task=_DictConfig(normalize=False)),
                  "model": state, "extra_state": {"hook": _Trap()}}
    with fake_foreign_modules():
        torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def fairseq_ckpt(hf_model, tmp_path_factory):
    return _write_fairseq(tmp_path_factory.mktemp("fairseq") / "checkpoint_best_legacy_500.pt",
                          _to_fairseq_keys(_hf_state(hf_model, old_weight_norm=False)))


@pytest.mark.parametrize("name", ["vec768l12", "vec256l9"])
def test_fairseq_layout_same_weights_and_features(hf_model, hf_dirs, fairseq_ckpt, wav, name):
    TRAP_CALLS.clear()
    with fake_foreign_modules():  # even with the foreign modules importable, none of their code runs
        encoder = load_content_encoder(name, fairseq_ckpt)
    assert TRAP_CALLS == []
    reference = load_content_encoder(name, hf_dirs["safetensors"])
    ours, theirs = encoder.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], atol=0, rtol=0, msg=key)
    with torch.no_grad():
        torch.testing.assert_close(encoder(wav), _reference(hf_model, wav, name), atol=1e-4, rtol=0)


@pytest.mark.parametrize("layout", ["fairseq", "safetensors"])
def test_loading_weights_draws_no_random_numbers(hf_dirs, fairseq_ckpt, layout):
    """The layers are built without random draws the file's weights would replace at once (constant_init): 0.3 s of
    a HuBERT-base load on 2 cores. The weights themselves are checked against transformers' above."""
    path = fairseq_ckpt if layout == "fairseq" else hf_dirs["safetensors"]
    state = torch.random.get_rng_state()
    encoder = load_content_encoder("vec768l12", path)
    assert torch.equal(state, torch.random.get_rng_state())  # torch's initialisers would have drawn
    assert all(torch.isfinite(p).all() for p in encoder.parameters())


def test_fairseq_trap_is_real(fairseq_ckpt):
    """The checkpoint does run code under an unrestricted load: the test above guards something."""
    TRAP_CALLS.clear()
    with fake_foreign_modules():
        torch.load(fairseq_ckpt, weights_only=False)
    assert TRAP_CALLS == ["config code ran"]


def test_find_setting_and_conv_spec():
    record = {"cfg": _DictConfig(encoder_attention_heads=8), "args": {"layer_norm_first": True}}
    assert find_setting(record, "layer_norm_first") is True
    assert find_setting(record, "missing") is None
    assert parse_conv_layers(CONV_SPEC) == [(CONV, 10, 5)] + [(CONV, 3, 2)] * 4 + [(CONV, 2, 2)] * 2
    with pytest.raises(ValueError):
        parse_conv_layers("__import__('os').system('true')")


# --- HuBERT-Soft (bshall) layout --------------------------------------------------------------------------

class _SoftReference(nn.Module):
    """bshall/hubert HubertSoft at reduced width, written from its description; 12 heads, as there."""

    def __init__(self, dim=96, conv=CONV, ff=FF, layers=LAYERS):
        super().__init__()
        fe = nn.Module()
        for i, (k, s) in enumerate([(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2):
            setattr(fe, f"conv{i}", nn.Conv1d(1 if i == 0 else conv, conv, k, s, bias=False))
        fe.norm0 = nn.GroupNorm(conv, conv)
        self.feature_extractor = fe
        self.feature_projection = nn.Module()
        self.feature_projection.norm = nn.LayerNorm(conv)
        self.feature_projection.projection = nn.Linear(conv, dim)
        self.positional_embedding = nn.Module()
        self.positional_embedding.conv = nn.utils.parametrizations.weight_norm(
            nn.Conv1d(dim, dim, 16, padding=8, groups=4), name="weight", dim=2)
        self.norm = nn.LayerNorm(dim)
        self.encoder = nn.Module()
        layer = nn.TransformerEncoderLayer(dim, 12, ff, activation="gelu", batch_first=True)
        self.encoder.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(layers))
        self.proj = nn.Linear(dim, 256)
        self.masked_spec_embed = nn.Parameter(torch.rand(dim))
        self.label_embedding = nn.Embedding(100, 256)

    def units(self, wav):  # (B, T) -> (B, 256, frames)
        fe = self.feature_extractor
        x = nn.functional.pad(wav, (40, 40))[:, None]
        x = nn.functional.gelu(fe.norm0(fe.conv0(x)))
        for i in range(1, 7):
            x = nn.functional.gelu(getattr(fe, f"conv{i}")(x))
        x = self.feature_projection.projection(self.feature_projection.norm(x.transpose(1, 2)))
        pos = self.positional_embedding.conv(x.transpose(1, 2))[..., :-1]
        x = self.norm(x + nn.functional.gelu(pos).transpose(1, 2))
        for layer in self.encoder.layers:
            x = layer(x)
        return self.proj(x).transpose(1, 2)

    def upstream_state_dict(self):  # old-style weight-norm names and DataParallel prefix, as distributed
        renames = {"parametrizations.weight.original0": "weight_g",
                   "parametrizations.weight.original1": "weight_v"}
        out = {}
        for k, v in self.state_dict().items():
            for old, new in renames.items():
                k = k.replace(old, new)
            out["module." + k] = v
        return out


@pytest.mark.parametrize("wrapped", [False, True])
def test_hubertsoft_layout_matches_reference(tmp_path, wav, wrapped):
    torch.manual_seed(5)
    ref = _SoftReference().eval()
    _perturb(ref, 6)
    state = ref.upstream_state_dict()
    torch.save({"hubert": state, "step": 1} if wrapped else state, tmp_path / "hubert-soft-0d54a1f4.pt")
    encoder = load_content_encoder("hubertsoft", tmp_path / "hubert-soft-0d54a1f4.pt")
    with torch.no_grad():
        units, expected = encoder(wav[:, :16000 - 123]), ref.units(wav[:, :16000 - 123])
    assert units.shape == (2, 256, (16000 - 123) // 320)
    torch.testing.assert_close(units, expected, atol=1e-4, rtol=0)


# --- unit stretching --------------------------------------------------------------------------------------

def _upstream_left(content, target_len):  # (D, T) -> (D, target_len): so-vits-svc's repeat_expand_2d, "left"
    src_len = content.shape[-1]
    out = torch.zeros(content.shape[0], target_len)
    bounds = torch.arange(src_len + 1) * target_len / src_len
    pos = 0
    for i in range(target_len):
        if not i < bounds[pos + 1]:
            pos += 1
        out[:, i] = content[:, pos]
    return out


def _plain_nearest(content, target_len):  # (D, T) -> (D, target_len): source index floor(i * T / target)
    scale = content.shape[-1] / target_len
    idx = [min(int(i * scale), content.shape[-1] - 1) for i in range(target_len)]
    return content[:, idx]


@pytest.mark.parametrize("src,target", [(10, 10), (10, 17), (50, 86), (49, 147), (3, 200), (86, 50), (13, 5)])
def test_units_to_frames_matches_upstream(src, target):
    units = torch.randn(2, 4, src)
    left = units_to_frames(units, target, mode="left")
    nearest = units_to_frames(units, target)
    assert left.shape == nearest.shape == (2, 4, target)
    for b in range(2):
        torch.testing.assert_close(left[b], _upstream_left(units[b], target), atol=0, rtol=0)
        torch.testing.assert_close(nearest[b], _plain_nearest(units[b], target), atol=0, rtol=0)
    with pytest.raises(ConfigError, match="unit_interpolate_mode"):
        units_to_frames(units, target, mode="cubic")


# --- random encoders --------------------------------------------------------------------------------------

def test_random_encoder_shapes_and_determinism():
    state = torch.random.get_rng_state()
    enc = random_content_encoder("vec256l9", seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    again = random_content_encoder("vec256l9", seed=1)
    wav = 0.1 * torch.randn(1, 16000)
    enc.train()  # stays deterministic: the encoder never leaves eval mode
    with torch.no_grad():
        units = enc(wav)
        torch.testing.assert_close(units, again(wav), atol=0, rtol=0)
    assert isinstance(enc, ContentEncoder) and not enc.training
    assert units.shape == (1, ENCODERS["vec256l9"], 49)
    assert not any(p.requires_grad for p in enc.parameters())
    assert len(enc.model.encoder.transformer.layers) == 9


# --- errors -----------------------------------------------------------------------------------------------

def test_errors(tmp_path, hf_dirs, hf_model, fairseq_ckpt):
    with pytest.raises(ConfigError, match="unknown content encoder"):
        load_content_encoder("whisper", hf_dirs["bin"])
    with pytest.raises(ContentWeightsError, match="does not exist"):
        load_content_encoder("vec768l12", tmp_path / "nope.pt")
    with pytest.raises(ContentWeightsError, match="no weight path"):
        load_content_encoder("vec768l12", None)
    with pytest.raises(ContentWeightsError, match="config.json"):
        load_content_encoder("vec768l12", tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ContentWeightsError, match="cannot be read") as info:
        load_content_encoder("vec768l12", tmp_path / "junk.pt")
    assert "checkpoint_best_legacy_500.pt" in str(info.value)  # lists the expected layouts
    torch.save({"generator": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ContentWeightsError, match="not a known content-encoder layout"):
        load_content_encoder("vec768l12", tmp_path / "other.pt")
    with pytest.raises(ContentWeightsError, match="cannot serve as 'hubertsoft'"):
        load_content_encoder("hubertsoft", fairseq_ckpt)

    no_proj = {k: v for k, v in _hf_state(hf_model, False).items() if not k.startswith("final_proj")}
    d = tmp_path / "hf_no_proj"
    d.mkdir()
    hf_model[0].config.to_json_file(str(d / "config.json"))
    save_file({k: v.contiguous() for k, v in no_proj.items()}, str(d / "model.safetensors"))
    assert load_content_encoder("vec768l12", d).dim == HIDDEN
    with pytest.raises(ContentWeightsError, match="projection head"):
        load_content_encoder("vec256l9", d)

    shallow = {k: v for k, v in _to_fairseq_keys(_hf_state(hf_model, False)).items()
               if not k.startswith(("encoder.layers.10.", "encoder.layers.11."))}
    with pytest.raises(ContentWeightsError, match="only 10 layers"):
        load_content_encoder("vec768l12", _write_fairseq(tmp_path / "shallow.pt", shallow))
    assert load_content_encoder("vec256l9", tmp_path / "shallow.pt").num_layers == 9

    broken = _to_fairseq_keys(_hf_state(hf_model, False))
    del broken["encoder.layers.3.fc1.bias"]
    broken["encoder.speaker_embedding.weight"] = torch.zeros(3)
    broken["encoder.layers.5.fc2.weight"] = torch.zeros(HIDDEN, 3)
    with pytest.raises(CheckpointMismatchError) as info:
        load_content_encoder("vec768l12", _write_fairseq(tmp_path / "broken.pt", broken))
    message = str(info.value)
    assert "encoder.transformer.layers.3.feed_forward.intermediate_dense.bias" in message  # missing
    assert "encoder.speaker_embedding.weight" in message  # unexpected
    assert "encoder.transformer.layers.5.feed_forward.output_dense.weight" in message  # mis-shaped
