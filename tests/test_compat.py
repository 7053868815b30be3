"""so-vits-svc 4.1 checkpoint compatibility: parity with the reference outputs and exact key sets."""

import json

import pytest
import torch

from svc_pl.compat import (
    load_sovits,
    load_sovits_discriminator,
    load_sovits_weights,
    read_sovits_config,
    save_sovits,
    save_sovits_discriminator,
    sovits_config_for,
    to_sovits_state_dict,
    write_json_atomic,
)
from svc_pl.compat.config import TEMPLATE_41
from svc_pl.errors import CheckpointMismatchError, ConfigError, UserFacingError
from svc_pl.layers.discriminator import MultiPeriodDiscriminator
from svc_pl.layers.f0 import f0_to_coarse
from svc_pl.synthesizer import Synthesizer


@pytest.fixture(scope="module")
def ref(fixture_dir):
    model = load_sovits(fixture_dir / "G_0.pth", fixture_dir / "config.json")
    inputs = torch.load(fixture_dir / "inputs.pt", weights_only=True)
    expected = torch.load(fixture_dir / "expected.pt", weights_only=True)
    return model, inputs, expected


def _close(a, b, atol=1e-4):
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= atol, (a - b).abs().max().item()


def test_f0_coarse_matches(ref):
    _, inputs, expected = ref
    assert torch.equal(f0_to_coarse(inputs["f0"]), expected["f0_coarse"])


def test_prior_and_flow_match(ref):
    model, inputs, expected = ref
    c, f0, uv = inputs["c"], inputs["f0"], inputs["uv"]
    with torch.no_grad():
        mask = torch.ones(1, 1, c.size(2))
        x = model._prior_input(c, uv, mask, None)
        _, m_p, logs_p, _ = model.enc_p(x, mask, f0_to_coarse(f0), noise_scale=0.0)
        z = model.flow(m_p, mask, g=model.speaker_embedding(inputs["sid"]), reverse=True)
    _close(m_p, expected["m_p"])
    _close(logs_p, expected["logs_p"])
    _close(z, expected["z_from_m_p"])


@pytest.mark.parametrize("noise", [0.0, 0.4])
def test_seeded_audio_matches(ref, noise):
    model, inputs, expected = ref
    audio, _ = model.infer(inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"], noise_scale=noise, seed=52468)
    _close(audio, expected[f"audio_noise{noise}"])


def test_predicted_f0_path_matches(ref):
    model, inputs, expected = ref
    audio, f0 = model.infer(inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"], noise_scale=0.4, seed=52468,
                            predict_f0=True)
    _close(audio, expected["audio_predict_f0"])
    # F0 in Hz (~270 Hz here): float32 spacing there is 3e-5 Hz, so allow a few ulps plus 1e-4.
    assert torch.allclose(f0, expected["f0_predicted"], atol=1e-4, rtol=1e-6)


def test_seeded_inference_restores_caller_rng(ref):
    model, inputs, _ = ref
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    model.infer(inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"])
    assert torch.equal(torch.rand(3), before)


def test_folded_weight_norm_gives_same_audio(fixture_dir, ref):
    _, inputs, expected = ref
    model = load_sovits(fixture_dir / "G_0.pth", fixture_dir / "config.json").prepare_for_inference()
    audio, _ = model.infer(inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"], noise_scale=0.4)
    _close(audio, expected["audio_noise0.4"])


def _manifest(fixture_dir, name):
    return {k: list(v) for k, v in json.loads((fixture_dir / name).read_text()).items()}


def _keys(module):
    return {k: list(v.shape) for k, v in to_sovits_state_dict(module).items()}


def test_default_44k_config_has_exact_keys(fixture_dir):
    cfg = sovits_config_for(dict(TEMPLATE_41["model"]) | {"sampling_rate": 44100}, {})
    model = Synthesizer(**cfg.synthesizer_kwargs())
    assert _keys(model) == _manifest(fixture_dir, "keys_G_44k.json")


def test_tiny_template_has_exact_keys(fixture_dir):
    tiny = dict(TEMPLATE_41["model"], filter_channels=512, upsample_initial_channel=400, use_depthwise_conv=True,
                flow_share_parameter=True)
    model = Synthesizer(**sovits_config_for(tiny, {}).synthesizer_kwargs())
    assert _keys(model) == _manifest(fixture_dir, "keys_G_tiny.json")


def test_discriminator_has_exact_keys(fixture_dir):
    assert _keys(MultiPeriodDiscriminator()) == _manifest(fixture_dir, "keys_D.json")


def test_save_load_round_trip(tmp_path, ref, fixture_dir):
    model, inputs, expected = ref
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    save_sovits(model, tmp_path / "G_5.pth", iteration=5, optimizer=opt, learning_rate=2e-4)
    ckpt = torch.load(tmp_path / "G_5.pth", weights_only=True)
    assert set(ckpt) == {"model", "iteration", "optimizer", "learning_rate"}
    assert ckpt["iteration"] == 5 and ckpt["learning_rate"] == 2e-4
    assert any(k.endswith("weight_g") for k in ckpt["model"])
    again = load_sovits(tmp_path / "G_5.pth", fixture_dir / "config.json")
    audio, _ = again.infer(inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"], noise_scale=0.4)
    _close(audio, expected["audio_noise0.4"])
    assert not list(tmp_path.glob(".*tmp"))


def test_parametrization_named_checkpoint_loads(tmp_path, ref, fixture_dir):
    model, inputs, expected = ref
    torch.save({"model": model.state_dict(), "iteration": 1, "optimizer": None, "learning_rate": 1e-4},
               tmp_path / "G_new.pth")
    again = load_sovits(tmp_path / "G_new.pth", fixture_dir / "config.json")
    audio, _ = again.infer(inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"], noise_scale=0.0)
    _close(audio, expected["audio_noise0.0"])


def test_release_checkpoint_without_posterior_encoder(tmp_path, fixture_dir, ref):
    _, inputs, expected = ref
    ckpt = torch.load(fixture_dir / "G_0.pth", weights_only=True)
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith("enc_q.")}
    torch.save(ckpt, tmp_path / "release.pth")
    model = load_sovits(tmp_path / "release.pth", fixture_dir / "config.json")
    audio, _ = model.infer(inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"], noise_scale=0.0)
    _close(audio, expected["audio_noise0.0"])


def test_mismatch_lists_every_problem(tmp_path, fixture_dir):
    ckpt = torch.load(fixture_dir / "G_0.pth", weights_only=True)
    sd = ckpt["model"]
    del sd["pre.weight"]
    sd["bogus.weight"] = torch.zeros(1)
    sd["emb_uv.weight"] = torch.zeros(3, 32)
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        load_sovits(tmp_path / "bad.pth", fixture_dir / "config.json")
    err = info.value
    assert err.missing == ["pre.weight"] and err.unexpected == ["bogus.weight"]
    assert err.mismatched and err.mismatched[0].startswith("emb_uv.weight")
    msg = str(err)
    assert "bad.pth" in msg and "pre.weight" in msg and "bogus.weight" in msg and "emb_uv.weight" in msg


def test_speaker_count_differs_strict_vs_finetune(tmp_path, fixture_dir, caplog):
    cfg = read_sovits_config(fixture_dir / "config.json")
    kwargs = cfg.synthesizer_kwargs() | {"n_speakers": 5}
    with pytest.raises(CheckpointMismatchError, match="fine-tune"):
        load_sovits_weights(Synthesizer(**kwargs), fixture_dir / "G_0.pth")
    model = Synthesizer(**kwargs)
    before = model.emb_g.weight.detach().clone()
    with caplog.at_level("WARNING"):
        load_sovits_weights(model, fixture_dir / "G_0.pth", finetune=True)
    assert torch.equal(model.emb_g.weight, before)
    assert "re-initialised emb_g" in caplog.text
    ref_sd = torch.load(fixture_dir / "G_0.pth", weights_only=True)["model"]
    assert torch.equal(model.pre.weight, ref_sd["pre.weight"])


def test_corrupt_checkpoint_names_file(tmp_path, fixture_dir):
    data = (fixture_dir / "G_0.pth").read_bytes()
    (tmp_path / "G_trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserFacingError, match="G_trunc.pth"):
        load_sovits(tmp_path / "G_trunc.pth", fixture_dir / "config.json")


def test_config_errors(tmp_path):
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ConfigError, match="c.json"):
        read_sovits_config(tmp_path / "c.json")
    write_json_atomic(tmp_path / "d.json", {"data": {"sampling_rate": 44100}, "model": {"n_heads": 2}})
    with pytest.raises(ConfigError, match="missing key"):
        read_sovits_config(tmp_path / "d.json")


def test_40_config_defaults(tmp_path, fixture_dir):
    raw = json.loads((fixture_dir / "config.json").read_text())
    for k in ("speech_encoder", "vol_embedding", "use_depthwise_conv", "flow_share_parameter",
              "use_automatic_f0_prediction", "use_transformer_flow", "n_flow_layer", "n_layers_trans_flow"):
        raw["model"].pop(k, None)
    write_json_atomic(tmp_path / "config.json", raw)
    cfg = read_sovits_config(tmp_path / "config.json")
    assert cfg.speech_encoder == "vec256l9"
    Synthesizer(**cfg.synthesizer_kwargs())


@pytest.mark.parametrize("width", [1.0, 0.25])
def test_discriminator_round_trip(tmp_path, width):
    """so-vits-svc's width and the narrower one the small configs export (tiny-nsf: 0.25) both load back."""
    disc = MultiPeriodDiscriminator(width=width)
    save_sovits_discriminator(disc, tmp_path / "D_0.pth", iteration=3)
    again = load_sovits_discriminator(tmp_path / "D_0.pth")
    assert again.discriminators[1].convs[0].weight.shape == disc.discriminators[1].convs[0].weight.shape
    y = torch.randn(1, 1, 4096)
    with torch.no_grad():
        a, b = disc(y, y), again(y, y)
    for x1, x2 in zip(a.real_logits, b.real_logits):
        assert torch.allclose(x1, x2)
