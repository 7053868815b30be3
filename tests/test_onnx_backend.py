"""The ONNX Runtime backend (``--backend onnxruntime``): the same audio as PyTorch fp32, graphs exported once per
model and cached, stale graphs re-exported, and a failing graph falling back to PyTorch with one warning."""

import logging
import os
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.cli import main as cli_main
from svc_pl.data.content import random_content_encoder
from svc_pl.infer import onnx_backend, ort_graphs
from svc_pl.infer.converter import Converter, ConvertOptions
from svc_pl.infer.loading import load_voice_model
from svc_pl.infer.onnx_backend import OrtContentEncoder, OrtSynthesizer, resolve_backend
from svc_pl.synthesizer import Synthesizer
from tests.speech import synth_speech
from tests.test_infer import write_tiny_voice

pytest.importorskip("onnxruntime")


def _inputs(synth: Synthesizer, frames: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    uv = (torch.rand(1, frames, generator=gen) > 0.2).float()
    f0 = (100 + 300 * torch.rand(1, frames, generator=gen)) * uv
    return torch.randn(1, synth.ssl_dim, frames, generator=gen), f0, uv


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    return write_tiny_voice(tmp_path_factory.mktemp("voice"))


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test exports into its own cache folder (never the user's)."""
    monkeypatch.setenv("SVC_PL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.mark.slow
def test_ort_equals_torch_fp32_on_the_41_default_model():
    """Windowed decoding (equal windows through the dynamic decoder graph) and a keyframed speaker, as the converter
    runs them."""
    from svc_pl.compat import sovits_config_for
    from svc_pl.compat.config import TEMPLATE_41

    cfg = sovits_config_for(dict(TEMPLATE_41["model"], sampling_rate=44100), {"a": 0, "b": 1}, hop_length=512)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        synth = Synthesizer(**cfg.synthesizer_kwargs()).prepare_for_inference()
    backend = OrtSynthesizer(synth)
    window = 8
    span = window + 2 * synth.dec.context_frames
    frames = span + 40
    c, f0, uv = _inputs(synth, frames)
    mix = torch.zeros(1, synth.n_speakers, frames)  # (1, S, T): from speaker 0 to speaker 1
    mix[0, 0], mix[0, 1] = torch.linspace(1, 0, frames), torch.linspace(0, 1, frames)
    for speaker in (1, mix):
        kw = dict(noise_scale=0.4, seed=7, decode_window=window, decode_frames=(10, frames - 10))
        ref, _ = synth.infer(c, f0, uv, speaker, **kw)
        out, _ = backend.infer(c, f0, uv, speaker, **kw)
        assert out.shape == ref.shape == (1, 1, (frames - 20) * 512)
        assert _rel_err(ref, out) < 1e-4  # another seed moves it by about 1
    assert [p.name.split("-")[1] for p in backend.exported] == ["prior", "decoder"]


def _tiny_base_ckpt(path):
    """The shipped DDSP base as an svc_pl checkpoint."""
    from svc_pl.pretrained import write_base_ckpt

    return write_base_ckpt(path, "tiny-base")


@pytest.mark.slow
def test_ort_conversion_equals_torch_fp32_with_the_tiny_base(tmp_path, caplog):
    """A whole seeded conversion with the shipped DDSP base: onnxruntime's output is torch fp32's."""
    vm = load_voice_model(_tiny_base_ckpt(tmp_path / "base.ckpt"))
    assert vm.net.decoder == "ddsp"
    conv = Converter(vm, random_content_encoder(vm.content_encoder))
    y, sr = sf.read(synth_speech(tmp_path / "in.wav", "Singing in the rain."), dtype="float32")
    with caplog.at_level(logging.INFO, logger="svc_pl"):
        ref = conv.convert(y, sr, ConvertOptions(speaker=0, precision="fp32", backend="torch"))
        out = conv.convert(y, sr, ConvertOptions(speaker=0, precision="fp32", backend="onnxruntime"))
        conv.convert(y, sr, ConvertOptions(speaker=0, precision="fp32", backend="onnxruntime"))
    assert np.abs(ref).max() > 0.01
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-4
    said = [r.getMessage() for r in caplog.records if "synthesizer backend" in r.getMessage()]
    assert said == ["synthesizer backend: torch (--backend asked for)",
                    "synthesizer backend: onnxruntime (--backend asked for)"]  # once per choice
    assert conv.backends.failed is None


def test_graphs_are_cached_and_reused(voice, own_cache, monkeypatch):
    vm = load_voice_model(voice / "G_1.pth")
    c, f0, uv = _inputs(vm.net, 120)
    first = Converter(vm, random_content_encoder("vec768l12")).backends.ort()
    ref, _ = first.infer(c, f0, uv, 0, decode_window=0)
    assert [p.name.split("-")[1] for p in first.exported] == ["prior", "decoder"]
    assert all(p.parent == own_cache for p in first.exported)
    assert first.digest == onnx_backend.file_sha256(voice / "G_1.pth")
    import onnx

    for p in first.exported:  # the cache holds ONNX Runtime's optimisation of the export: fused operators
        assert any(n.domain == "com.microsoft" for n in onnx.load(str(p)).graph.node), p.name
    mtimes = {p: p.stat().st_mtime_ns for p in own_cache.glob("*.onnx")}
    exports = []
    monkeypatch.setattr(onnx_backend, "export_graph", lambda *a, **k: exports.append(a))
    # a cached graph is found without importing onnx (about a second of every conversion's load, with ml_dtypes)
    monkeypatch.setitem(sys.modules, "onnx", None)
    second = Converter(load_voice_model(voice / "G_1.pth"), random_content_encoder("vec768l12")).backends.ort()
    out, _ = second.infer(c, f0, uv, 0, decode_window=0)
    assert exports == [] and second.exported == []
    assert {p: p.stat().st_mtime_ns for p in own_cache.glob("*.onnx")} == mtimes
    assert torch.equal(ref, out)


def test_stale_and_damaged_graphs_are_exported_again(voice, own_cache, monkeypatch, caplog):
    vm = load_voice_model(voice / "G_1.pth")
    c, f0, uv = _inputs(vm.net, 120)
    old = OrtSynthesizer(vm.net, "ab" * 32)
    ref, _ = old.infer(c, f0, uv, 0)
    old_path = old.exported[1]  # prior, decoder
    monkeypatch.setattr(ort_graphs, "EXPORTER_VERSION", ort_graphs.EXPORTER_VERSION + 1)
    new = OrtSynthesizer(vm.net, "ab" * 32)
    out, _ = new.infer(c, f0, uv, 0)
    assert len(new.exported) == 2 and not any(p.exists() for p in old.exported)  # the stale ones are gone
    new_path = new.exported[1]
    assert new_path != old_path and new_path.is_file()
    assert torch.equal(ref, out)
    new_path.write_bytes(new_path.read_bytes()[:1000])  # a damaged cache file
    with caplog.at_level(logging.WARNING):
        again = OrtSynthesizer(vm.net, "ab" * 32)
        out, _ = again.infer(c, f0, uv, 0)
    assert again.exported == [new_path] and "does not load" in caplog.text
    assert torch.equal(ref, out)
    assert sorted(own_cache.iterdir()) == sorted(new.exported)  # no temporaries left


def test_a_failing_graph_falls_back_to_torch_with_one_warning(voice, monkeypatch, caplog, tmp_path):
    def broken(path, threads=None, prepack=True):
        raise RuntimeError("no kernel for this node")

    monkeypatch.setattr(ort_graphs, "build_session", broken)
    conv = Converter(load_voice_model(voice / "G_1.pth"), random_content_encoder("vec768l12"))
    y, sr = sf.read(synth_speech(tmp_path / "in.wav", "Hello there."), dtype="float32")
    opts = ConvertOptions(speaker="alto", precision="fp32", backend="onnxruntime")
    with caplog.at_level(logging.WARNING):
        out = conv.convert(y, sr, opts)
        conv.convert(y, sr, opts)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == ["onnxruntime content encoder failed (RuntimeError: no kernel for this node); encoding with "
                      "torch instead",
                      "onnxruntime backend failed (RuntimeError: no kernel for this node); converting with torch "
                      "instead"]  # each once
    ref = conv.convert(y, sr, ConvertOptions(speaker="alto", precision="fp32", backend="torch"))
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("depthwise", [False, True])
def test_planar_decoder_stages_compute_what_the_1d_ones_do(tmp_path, depthwise):
    """Stages with at least ``planar_channels`` channels are exported as (1, k) 2-D convolutions (ONNX Runtime's
    blocked kernels) and give the 1-D decoder's audio; the others, and depthwise-separable blocks, stay 1-D."""
    import types

    import onnx

    from svc_pl.layers.conv import remove_weight_norm_modules
    from svc_pl.layers.nsf import NSFHiFiGAN

    torch.manual_seed(0)
    dec = NSFHiFiGAN(24, 16000, [4, 4, 2], [8, 8, 4], 64, gin_channels=8).eval()
    for m in dec.modules():
        remove_weight_norm_modules(m)
    if depthwise:  # a DSConv decoder's blocks: not plain convolutions
        from svc_pl.layers.conv import DepthwiseSeparableConv1d

        block = dec.resblocks[0]
        block.convs1[0] = DepthwiseSeparableConv1d(32, 32, 3, 1, padding=1)
    graph = ort_graphs.DecoderGraph(types.SimpleNamespace(dec=dec), planar_channels=16)
    # stage channels 32, 16, 8
    assert graph.planar == ([False, True, False] if depthwise else [True, True, False])
    gen = torch.Generator().manual_seed(1)
    z, g = torch.randn(1, 24, 37, generator=gen), torch.randn(1, 8, 37, generator=gen)
    har = torch.rand(1, 1, 37 * 32, generator=gen) * 0.2 - 0.1
    with torch.no_grad():
        ref = dec.decode(z, har, g)
        assert _rel_err(ref, graph(z, har, g)) < 1e-5
    path = ort_graphs._export(graph, (z, har, g), tmp_path / "dec.onnx", ["z", "har_source", "g"], ["audio"],
                              {"z": {2: "n"}, "har_source": {2: "s"}, "g": {2: "n"}, "audio": {2: "s"}})
    model = onnx.load(str(path))
    kernels = {i.name: len(i.dims) for i in model.graph.initializer}
    conv_ranks = [kernels[n.input[1]] for n in model.graph.node if n.op_type == "Conv" and n.input[1] in kernels]
    assert conv_ranks.count(4) == (6 * 3 if depthwise else 6 * 3 * 2)  # 3 blocks of 6 convs per planar stage
    sess = ort_graphs.build_session(path)
    for frames in (37, 50):  # dynamic length
        z2, g2 = torch.randn(1, 24, frames, generator=gen), torch.randn(1, 8, frames, generator=gen)
        har2 = torch.rand(1, 1, frames * 32, generator=gen) * 0.2 - 0.1
        (out,) = sess.run(None, {"z": z2.numpy(), "har_source": har2.numpy(), "g": g2.numpy()})
        with torch.no_grad():
            assert _rel_err(dec.decode(z2, har2, g2), torch.from_numpy(out)) < 1e-4


def test_planar_setting_is_part_of_the_graph_cache_key(voice):
    vm = load_voice_model(voice / "G_1.pth")
    paths = {OrtSynthesizer(vm.net, planar_channels=pc).graph_path("decoder") for pc in (None, 64, 128)}
    assert len(paths) == 3
    assert OrtSynthesizer(vm.net, planar_channels="auto").planar_channels == ort_graphs.planar_min_channels()
    assert ort_graphs.planar_min_channels() in (None, 64, 128)


def test_auto_picks_by_device_and_precision(monkeypatch):
    assert resolve_backend("auto", "fp32", "cpu")[0] == "onnxruntime"
    assert resolve_backend("auto", "bf16", "cpu")[0] == "torch"
    assert resolve_backend("auto", "fp32", "cuda")[0] == "torch"
    assert resolve_backend("onnxruntime", "fp32", "cuda")[0] == "torch"
    assert resolve_backend("torch", "fp32", "cpu")[0] == "torch"
    assert resolve_backend("auto", "fp32", "cpu", "ddsp")[0] == "torch"  # tiny voices: no faster in ONNX Runtime
    assert resolve_backend("onnxruntime", "fp32", "cpu", "ddsp")[0] == "onnxruntime"
    monkeypatch.setattr("svc_pl.infer.runtime.cpu_has_native_bf16", lambda: False)
    assert resolve_backend("auto", "auto", "cpu")[0] == "onnxruntime"  # an AVX2 CPU: ORT fp32
    monkeypatch.setattr("svc_pl.infer.runtime.cpu_has_native_bf16", lambda: True)
    assert resolve_backend("auto", "auto", "cpu")[0] == "torch"  # native bf16: torch bf16
    monkeypatch.setattr(onnx_backend, "onnxruntime_available", lambda: False)
    name, why = resolve_backend("onnxruntime", "fp32", "cpu")
    assert name == "torch" and "pip install onnxruntime" in why


def test_cli_backend_flag(voice, tmp_path, caplog):
    src = synth_speech(tmp_path / "in.wav", "Hello there.")
    with caplog.at_level(logging.INFO, logger="svc_pl"):
        rc = cli_main(["infer", str(src), "-o", str(tmp_path / "out"), "-m", str(voice / "G_1.pth"), "-s", "alto",
                       "--backend", "onnxruntime", "--precision", "fp32", "--random-encoder", "--no-progress"])
    assert rc == 0 and (tmp_path / "out" / "in.wav").is_file()
    assert "synthesizer backend: onnxruntime" in caplog.text
    graphs = sorted(p.name.split("-")[1] for p in (tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert graphs == ["content", "decoder", "prior"]
    assert os.environ["SVC_PL_CACHE"] == str(tmp_path / "cache")


@pytest.mark.parametrize("name", ["vec768l12", "hubertsoft"])
def test_content_encoder_in_onnxruntime_equals_torch_and_is_cached(name, own_cache, monkeypatch):
    """HuBERT/ContentVec units from ONNX Runtime are the module's (any length, batch of 2), exported once per
    encoder; a second wrapper of the same weights reuses the cached graph."""
    enc = random_content_encoder(name).eval()
    ort = OrtContentEncoder(enc)
    for n in (400, 16000, 37 * 320 + 11):
        wav = torch.randn(2, n, generator=torch.Generator().manual_seed(n)) * 0.1
        with torch.no_grad():
            ref = enc(wav)
        out = ort(wav)
        assert out.shape == ref.shape and _rel_err(ref, out) < 1e-4, (n, _rel_err(ref, out))
    assert [p.name.split("-")[1] for p in ort.exported] == ["content"]
    # the encoder's weights held once (no pre-packed copy: 226 MiB less for HuBERT base at the same speed)
    assert ort.session().get_session_options().get_session_config_entry("session.disable_prepacking") == "1"
    exports = []
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: exports.append(a))
    again = OrtContentEncoder(enc)
    assert torch.equal(again(wav), out) and exports == [] and again.exported == []
    with pytest.raises(ValueError, match="too short"):  # the module's own message for bad input
        again(torch.zeros(1, 100))


def test_nsf_conversion_with_ort_units_and_synthesizer_equals_torch(voice, tmp_path):
    """A whole seeded conversion of an NSF voice with ContentVec units, both stages in ONNX Runtime: torch fp32's
    audio."""
    conv = Converter(load_voice_model(voice / "G_1.pth"), random_content_encoder("vec768l12"))
    y, sr = sf.read(synth_speech(tmp_path / "in.wav", "Singing in the rain."), dtype="float32")
    ref = conv.convert(y, sr, ConvertOptions(speaker="tenor", precision="fp32", backend="torch"))
    out = conv.convert(y, sr, ConvertOptions(speaker="tenor", precision="fp32", backend="onnxruntime"))
    assert len(conv.backends._ort_encoders) == 1 and conv.backends.encoder_failed is None
    assert np.abs(ref).max() > 0.01
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-4


def test_default_decode_window_follows_the_backend(voice, tmp_path, monkeypatch):
    """``decode_window=None`` (the default) decodes in windows of 1024 frames under ONNX Runtime and 256 under torch
    (also after ONNX Runtime failed); a window given is used as given."""
    seen = []
    real_ort, real_torch = OrtSynthesizer.infer, Synthesizer.infer

    def spy(name, real):
        def infer(self, *args, **kwargs):
            seen.append((name, kwargs["decode_window"]))
            return real(self, *args, **kwargs)
        return infer

    monkeypatch.setattr(OrtSynthesizer, "infer", spy("onnxruntime", real_ort))
    monkeypatch.setattr(Synthesizer, "infer", spy("torch", real_torch))
    assert ConvertOptions().decode_window is None
    conv = Converter(load_voice_model(voice / "G_1.pth"), random_content_encoder("vec768l12"))
    y, sr = sf.read(synth_speech(tmp_path / "in.wav", "Hi."), dtype="float32")
    for backend, window in (("torch", None), ("onnxruntime", None), ("onnxruntime", 64)):
        seen.clear()
        conv.convert(y, sr, ConvertOptions(speaker="alto", precision="fp32", backend=backend, decode_window=window))
        expected = {"torch": 256, "onnxruntime": 1024}[backend] if window is None else window
        assert seen and set(seen) == {(backend, expected)}, (backend, window, seen)

    def broken(path, threads=None, prepack=True):
        raise RuntimeError("no kernel for this node")

    monkeypatch.setattr(ort_graphs, "build_session", broken)
    conv.backends._ort = None  # a fresh export, which fails
    seen.clear()
    conv.convert(y, sr, ConvertOptions(speaker="alto", precision="fp32", backend="onnxruntime"))
    conv.convert(y, sr, ConvertOptions(speaker="alto", precision="fp32", backend="onnxruntime"))
    assert seen[-1] == ("torch", 256)  # once ONNX Runtime failed, torch's default
