"""ONNX export: dynamic frame length, parity with PyTorch, a deterministic graph that reproduces infer."""

import contextlib
import io

import numpy as np
import pytest
import torch

from svc_pl.cli import main
from svc_pl.compat import load_sovits
from svc_pl.infer.onnx_export import OnnxSynthesizer, example_inputs, export_onnx, infer_noise
from svc_pl.synthesizer import Synthesizer

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def fixture_model(fixture_dir):
    return load_sovits(fixture_dir / "G_0.pth", fixture_dir / "config.json")


@pytest.fixture(scope="module")
def exported(fixture_model, fixture_dir, tmp_path_factory):
    """The fixture model exported through the CLI, and the PyTorch wrapper to compare it with."""
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(
            [
                "export-onnx",
                "--model",
                str(fixture_dir / "G_0.pth"),
                "--config",
                str(fixture_dir / "config.json"),
                "-o",
                str(out),
                "--opset",
                "17",
            ]
        )
    assert rc == 0 and out.is_file(), stdout.getvalue()
    assert str(out) in stdout.getvalue()
    return OnnxSynthesizer(fixture_model).eval(), ort.InferenceSession(
        str(out), providers=["CPUExecutionProvider"]
    )


def _run(session, inputs):
    return session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]


@pytest.mark.parametrize(("frames", "batch"), [(200, 1), (137, 2)])
def test_onnx_matches_pytorch_at_any_length(exported, frames, batch):
    wrapper, session = exported
    assert [i.name for i in session.get_inputs()] == ["c", "f0", "uv", "sid", "noise", "phase", "sine_noise"]
    inputs = example_inputs(wrapper, batch=batch, frames=frames, seed=frames)
    with torch.no_grad():
        expected = wrapper(**inputs).numpy()
    out = _run(session, inputs)
    assert out.shape == (batch, 1, frames * 512)
    assert np.abs(out - expected).max() < 1e-5  # dropping an input (e.g. the noise) moves it far more


def test_wrapper_reproduces_seeded_infer(fixture_model, exported):
    wrapper, _ = exported
    frames, seed, noise_scale = 60, 1234, 0.35
    inputs = example_inputs(wrapper, batch=1, frames=frames, seed=3)
    ref, _ = fixture_model.infer(
        inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"], noise_scale=noise_scale, seed=seed
    )
    # the draws of infer, in order: prior noise, source phases (fundamental at 0), source noise
    torch.manual_seed(seed)
    noise = torch.randn(1, fixture_model.enc_p.out_channels, frames) * noise_scale
    phase = torch.rand(1, 9)
    phase[:, 0] = 0
    sine_noise = torch.randn(1, frames * 512, 9)
    drawn = infer_noise(fixture_model, 1, frames, noise_scale, seed)
    for name, value in (("noise", noise), ("phase", phase), ("sine_noise", sine_noise)):
        assert torch.equal(drawn[name], value)
    inputs.update(noise=noise, phase=phase.clone(), sine_noise=sine_noise)
    inputs["phase"][:, 0] = 0.7  # ignored: the fundamental always starts at phase 0
    with torch.no_grad():
        out = wrapper(**inputs)
    assert (out - ref).abs().max().item() < 1e-4


def test_speaker_mix_and_volume_export(tmp_path):
    torch.manual_seed(0)
    synth = Synthesizer(
        spec_channels=65,
        inter_channels=8,
        hidden_channels=8,
        filter_channels=16,
        n_layers=1,
        resblock="2",
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8],
        upsample_initial_channel=16,
        gin_channels=8,
        ssl_dim=12,
        n_speakers=3,
        sampling_rate=16000,
        vol_embedding=True,
        n_flow_layer=2,
    ).eval()
    path = export_onnx(synth, tmp_path / "mix.onnx", speaker_mix=True)
    wrapper = OnnxSynthesizer(synth, speaker_mix=True).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[-1].name == "vol"
    for frames in (40, 3):  # below the attention window (4) too
        inputs = example_inputs(wrapper, batch=3, frames=frames, seed=frames)
        assert inputs["sid"].shape == (3, 3) and inputs["sid"].dtype == torch.float32
        with torch.no_grad():
            expected = wrapper(**inputs).numpy()
        out = _run(session, inputs)
        assert out.shape == (3, 1, frames * 16)
        assert np.abs(out - expected).max() < 1e-4
    # one-hot mix weights give the same audio as the speaker id
    inputs = example_inputs(wrapper, batch=1, frames=20)
    ids = OnnxSynthesizer(synth).eval()
    with torch.no_grad():
        by_id = ids(**{**inputs, "sid": torch.tensor([2])})
        by_mix = wrapper(**{**inputs, "sid": torch.tensor([[0.0, 0.0, 1.0]])})
    assert torch.allclose(by_id, by_mix, atol=1e-6)


def test_cli_export_onnx_errors(tmp_path, capsys, fixture_dir):
    rc = main(["export-onnx", "--model", str(tmp_path / "G_9.pth"), "-o", str(tmp_path / "m.onnx")])
    assert rc == 2
    assert "G_9.pth" in capsys.readouterr().err
    rc = main(
        [
            "export-onnx",
            "--model",
            str(fixture_dir / "G_0.pth"),
            "-o",
            str(tmp_path / "m.onnx"),
            "--opset",
            "11",
        ]
    )
    assert rc == 2
    assert "opset 11" in capsys.readouterr().err


def test_a_4_0_model_exports_with_its_own_pitch_bins(tmp_path):
    """A 4.0 checkpoint maps F0 to pitch bins the 4.0 way (ties round up, above ~1105 Hz clip to 255); the graph
    must too, or tie frames and high notes come out of another embedding row."""
    from pathlib import Path

    from svc_pl.layers.f0 import f0_to_coarse

    d = Path(__file__).parent / "data" / "sovits_variants" / "v40"
    model = load_sovits(d / "G_0.pth", d / "config.json")
    assert model.coarse_pitch == "4.0"
    export_onnx(model, tmp_path / "v40.onnx")
    session = ort.InferenceSession(str(tmp_path / "v40.onnx"), providers=["CPUExecutionProvider"])
    given = torch.load(d / "inputs.pt", weights_only=True)
    frames = given["f0"].shape[-1]
    inputs = example_inputs(OnnxSynthesizer(model), batch=1, frames=frames, seed=0)
    inputs.update(c=given["c"], f0=given["f0"], uv=given["uv"], sid=given["sid"])
    assert not torch.equal(f0_to_coarse(inputs["f0"], "4.0"), f0_to_coarse(inputs["f0"], "4.1"))
    ref, _ = model.infer(inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"], noise_scale=0.35, seed=1234)
    inputs.update(infer_noise(model, 1, frames, 0.35, 1234))
    assert np.abs(_run(session, inputs) - ref.numpy()).max() < 1e-4
