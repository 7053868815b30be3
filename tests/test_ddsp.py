"""The DDSP harmonic-plus-noise decoder, the synthesizer built on it, its training recipe, and the shipped base."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from svc_pl.layers.ddsp import DDSPDecoder, MultiResolutionSTFTLoss, harmonic_phase
from svc_pl.synthesizer import Synthesizer

SR, HOP = 16000, 320


def _harmonic_energy(y: np.ndarray, f0: float, sr: int = SR) -> float:
    """Share of the spectrum's energy within 2 % of multiples of f0."""
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    k = np.round(freqs / f0)
    near = (k >= 1) & (np.abs(freqs - k * f0) < 0.02 * f0)
    return float(spec[near].sum() / spec.sum())


def test_untrained_decoder_follows_pitch_and_respects_nyquist_and_voicing():
    torch.manual_seed(0)
    dec = DDSPDecoder(16, SR, HOP, hidden=32, gin_channels=8).eval()
    x, g = torch.randn(1, 16, 1).expand(1, 16, 50), torch.randn(1, 8, 1)  # steady controls: pure harmonics
    for f0 in (110.0, 440.0):
        with torch.no_grad():
            amps, _ = dec.controls(x, torch.full((1, 50), f0), torch.ones(1, 50), g)
            y = dec.harmonics(amps, torch.full((1, 50), f0))[0].numpy()
        assert _harmonic_energy(y, f0) > 0.99
    with torch.no_grad():  # 3 kHz at 16 kHz: only harmonics 1 and 2 lie below Nyquist
        amps, _ = dec.controls(x, torch.full((1, 50), 3000.0), torch.ones(1, 50), g)
    assert torch.all(amps[:, 2:] == 0) and torch.all(amps[:, :2] > 0)
    with torch.no_grad():  # unvoiced frames get no harmonics, only noise
        amps, gains = dec.controls(x, torch.full((1, 50), 200.0), torch.zeros(1, 50), g)
    assert torch.all(amps == 0) and torch.all(gains > 0)


def _peaked_decoder(envelope_bins: int, peak: int) -> DDSPDecoder:
    """An untrained decoder whose shape outputs are all 0 but output ``peak`` (1 + index), which is 8."""
    dec = DDSPDecoder(16, SR, HOP, hidden=32, n_harmonics=64, envelope_bins=envelope_bins).eval()
    with torch.no_grad():
        dec.out.weight.zero_()
        dec.out.bias.zero_()
        dec.out.bias[1 + peak] = 8.0
    return dec


def test_envelope_keeps_a_formant_at_its_frequency_whatever_the_pitch():
    """``envelope_bins``: the harmonics' shares are read from an envelope over frequency at k * F0, so a peak stays
    at 1 kHz at 100 and at 250 Hz; the harmonic distribution (0) keeps it at a harmonic number instead."""
    x = torch.zeros(1, 16, 4)
    env = _peaked_decoder(65, 8)  # 65 bins from 0 to 8 kHz: bin 8 is 1000 Hz
    dist = _peaked_decoder(0, 8)  # output 8: harmonic 9
    for f0 in (100.0, 250.0):
        f, uv = torch.full((1, 4), f0), torch.ones(1, 4)
        with torch.no_grad():
            a_env, _ = env.controls(x, f, uv, None)
            a_dist, _ = dist.controls(x, f, uv, None)
        assert (int(a_env[0, :, 0].argmax()) + 1) * f0 == 1000.0
        assert int(a_dist[0, :, 0].argmax()) + 1 == 9
        # the same loudness either way: the shares sum to one over the harmonics below Nyquist
        assert torch.allclose(a_env.sum(1), a_dist.sum(1), rtol=1e-5)
    with torch.no_grad():  # between bins: interpolated (bin 8 = 1000 Hz, harmonic 3 of 300 Hz = 900 Hz)
        logits = env.harmonic_logits(env.out.bias[1:66].view(1, 65, 1), torch.tensor([[300.0]]))
    assert float(logits[0, 2, 0]) == pytest.approx(8.0 * 0.2, rel=1e-4)  # bin 7.2: a fifth of the way to bin 8
    with pytest.raises(ValueError, match="envelope_bins"):
        DDSPDecoder(16, SR, HOP, envelope_bins=1)


def _span_ms(y: np.ndarray, share: float = 0.9) -> float:
    """The shortest stretch of ``y`` (ms) that holds ``share`` of its energy."""
    c = np.concatenate([[0.0], np.cumsum(y.astype(np.float64) ** 2)])
    starts = np.arange(int(np.searchsorted(c, (1 - share) * c[-1], side="right")))  # those that can hold it
    return 1000 * int((np.searchsorted(c, c[starts] + share * c[-1]) - starts).min()) / SR


def test_noise_steps_shape_a_burst_shorter_than_a_frame():
    """``noise_steps`` S: the noise is shaped S times per frame through a window of 4 hops / S, and a level head
    scales each sub-step. A burst of one sub-step (5 ms at S = 4) keeps 90 % of its energy within about 7 ms;
    one step per frame (the 80 ms window) cannot: even a single frame's gain spreads it over ~28 ms."""
    t, m = 20, 65
    fine = DDSPDecoder(16, SR, HOP, hidden=32, noise_steps=4).eval()
    coarse = DDSPDecoder(16, SR, HOP, hidden=32).eval()
    assert fine.n_fft == HOP and coarse.n_fft == 4 * HOP and coarse.noise_env is None
    burst = torch.zeros(1, m, 4 * t)
    burst[..., 4 * 10 + 2] = 1.0  # sub-step 2 of frame 10: centred at sample 42 * 80
    frame = torch.zeros(1, m, t)
    frame[..., 10] = 1.0  # frame 10: centred at sample 10 * 320
    torch.manual_seed(0)
    y_fine = fine.noise(burst, t * HOP)[0].numpy()
    y_coarse = coarse.noise(frame, t * HOP)[0].numpy()
    assert _span_ms(y_fine) < 10 and _span_ms(y_coarse) > 3 * _span_ms(y_fine)
    assert abs(int(np.abs(y_fine).argmax()) - 42 * HOP // 4) < HOP // 2  # where the sub-step is

    x, f0, uv = torch.randn(1, 16, t), torch.full((1, t), 200.0), torch.zeros(1, t)
    with torch.no_grad():
        _, frame_gains = coarse.controls(x, f0, uv, None)
        fine.load_state_dict(coarse.state_dict() | {k: v for k, v in fine.state_dict().items()
                                                    if k.startswith("noise_env.")})
        _, gains = fine.controls(x, f0, uv, None)
        # a zero level head (its start, and a base trained without it): the frame gains, interpolated
        assert gains.shape == (1, m, 4 * t)
        assert torch.allclose(gains[..., ::4], frame_gains)
        assert torch.allclose(gains[..., 2:-4:4], (frame_gains[..., :-1] + frame_gains[..., 1:]) / 2)
        fine.noise_env.bias.copy_(torch.tensor([-30.0, -30.0, 30.0, -30.0]))
        _, gated = fine.controls(x, f0, uv, None)
    assert torch.allclose(gated[..., 2::4], 2 * gains[..., 2::4]) and gated[..., 0::4].max() < 1e-9
    with pytest.raises(ValueError, match="noise_steps"):
        DDSPDecoder(16, SR, HOP, noise_steps=3)


def test_phase_stays_accurate_over_long_inputs():
    f0 = torch.full((1, 30000), 440.0)  # 10 minutes of frames
    phase = harmonic_phase(f0, HOP, SR)
    n = phase.shape[-1]
    exact = np.mod(np.arange(1, n + 1, dtype=np.float64) * 440.0 / SR, 1.0)
    err = np.abs(phase.numpy()[0].astype(np.float64) - exact)
    err = np.minimum(err, 1 - err)
    assert err.max() < 1e-4


def test_stft_loss():
    loss = MultiResolutionSTFTLoss()
    y = torch.randn(2, 1, 16000)
    assert float(loss(y, y)) < 1e-5
    assert float(loss(0.5 * y, y)) > 0.3


def _ddsp_net(**kw) -> Synthesizer:
    args = dict(spec_channels=513, segment_size=20, inter_channels=16, hidden_channels=16, filter_channels=32,
                n_layers=1, gin_channels=8, ssl_dim=12, n_speakers=3, sampling_rate=SR, decoder="ddsp",
                hop_length=HOP, ddsp_hidden=32)
    return Synthesizer(**(args | kw))


def test_ddsp_synthesizer_train_and_infer_shapes():
    torch.manual_seed(0)
    net = _ddsp_net()
    assert not hasattr(net, "enc_q") and not hasattr(net, "flow")
    b, t = 2, 60
    c, f0, uv = torch.randn(b, 12, t), torch.full((b, t), 200.0), torch.ones(b, t)
    out = net(c, f0, uv, torch.zeros(b, 513, t), torch.tensor([0, 2]), torch.tensor([t, 40]), torch.tensor([t, 40]))
    assert out.audio.shape == (b, 1, 20 * HOP) and out.z is None and out.pred_lf0.shape == (b, 1, t)
    net.eval()
    audio, _ = net.infer(c[:1], f0[:1], uv[:1], speaker=1)
    assert audio.shape == (1, 1, t * HOP)
    part, _ = net.infer(c[:1], f0[:1], uv[:1], speaker=1, decode_window=16, decode_frames=(10, 30))
    assert torch.allclose(part, audio[..., 10 * HOP:30 * HOP], atol=1e-6)
    again, _ = net.infer(c[:1], f0[:1], uv[:1], speaker=1)
    assert torch.equal(again, audio)  # seeded noise: repeatable


@pytest.mark.parametrize("noise_steps", [1, 4])
def test_envelope_synthesizer_config_round_trip_and_onnx(tmp_path, noise_steps):
    """``ddsp_envelope_bins`` (and ``ddsp_noise_steps``) in the net config build the decoder's envelope head (and
    noise level head), survive the config round trip, and the prior graph (with the envelope read by a gather, the
    gains at noise_steps per frame) gives torch's audio in ONNX Runtime."""
    pytest.importorskip("onnxruntime")
    from svc_pl.infer.onnx_backend import OrtSynthesizer
    from svc_pl.synthesizer import NetConfig, synthesizer_kwargs

    kw = synthesizer_kwargs(NetConfig.from_dict({"decoder": "ddsp", "ddsp_envelope_bins": 33, "inter_channels": 16,
                                                  "hidden_channels": 16, "filter_channels": 32, "n_layers": 1,
                                                  "gin_channels": 8, "ddsp_hidden": 32,
                                                  "ddsp_noise_steps": noise_steps}),
                            {"sampling_rate": SR, "hop_length": HOP, "filter_length": 1024, "unit_dim": 12,
                             "n_speakers": 2})
    assert kw["ddsp_envelope_bins"] == 33 and kw["ddsp_noise_steps"] == noise_steps
    torch.manual_seed(0)
    net = Synthesizer(**kw).eval()
    assert net.dec.out.out_channels == 1 + 33 + net.dec.n_noise_bands
    if noise_steps > 1:
        assert net.dec.noise_env.out_channels == noise_steps
        torch.nn.init.normal_(net.dec.noise_env.weight)  # a level that varies within each frame
    t = 40
    gen = torch.Generator().manual_seed(1)
    c, f0 = torch.randn(1, 12, t, generator=gen), 100 + 300 * torch.rand(1, t, generator=gen)
    uv = torch.ones(1, t)
    with torch.no_grad():
        ref, _ = net.infer(c, f0, uv, speaker=1, seed=3)
    out, _ = OrtSynthesizer(net).infer(c, f0, uv, 1, seed=3)
    assert ref.abs().max() > 1e-3
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-4


def test_ddsp_training_step_without_discriminator(tmp_path):
    """One generator-only optimizer step per batch; the STFT loss is logged and the weights move."""
    from tests.datasets import make_dataset

    from svc_pl.data.datamodule import SVCDataModule
    from svc_pl.lightning.module import SVCModule
    import pytorch_lightning as pl

    data = make_dataset(tmp_path / "data", unit_dim=12, clips_per_voice=2)
    dm = SVCDataModule(str(data), batch_size=2, num_workers=0, max_frames=120, n_buckets=1, val_clips=1)
    net = {"decoder": "ddsp", "inter_channels": 16, "hidden_channels": 16, "filter_channels": 32, "n_layers": 1,
           "gin_channels": 8, "ddsp_hidden": 32}
    model = SVCModule(net=net, dataset_info=dm.dataset_info, segment_size=6400, use_discriminator=False,
                      c_stft=1.0, learning_rate=1e-3)
    assert model.disc is None
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    trainer = pl.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, dm)
    assert trainer.global_step == 3  # one optimizer step per batch
    moved = [k for k, v in model.net.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("dec.") for k in moved) and any(k.startswith("enc_p.") for k in moved)
    with pytest.raises(Exception, match="DDSP decoder"):
        model.export_sovits(tmp_path / "export")


def test_shipped_base_loads_and_fine_tunes_with_new_speakers(tmp_path):
    """tiny-base by name: weights in the package, speaker table restarted at the base's mean voice."""
    from svc_pl.errors import UserFacingError
    from svc_pl.lightning.module import SVCModule
    from svc_pl.pretrained import load_base, pretrained_path, save_base

    path = pretrained_path("tiny-base")
    assert path.stat().st_size < 25e6
    state, meta = load_base(path)
    assert meta["dataset_info"]["content_encoder"] == "whisper-ppg" and meta["dataset_info"]["unit_dim"] == 384
    info = dict(meta["dataset_info"], speakers={"a": 0, "b": 1}, n_speakers=2)
    model = SVCModule(net=meta["net"], dataset_info=info, segment_size=16000, use_discriminator=False, c_stft=1.0,
                      init_from="tiny-base")
    for k, v in model.net.state_dict().items():
        if k != "emb_g.weight":
            assert torch.allclose(v, state[k]), k
    table = state["emb_g.weight"]
    new = model.net.emb_g.weight.detach()
    assert torch.all((new - table.mean(0)).abs() <= 0.5 * table.std(0) + 1e-6)  # near the base's mean voice
    assert not torch.equal(new[0], new[1])
    with pytest.raises(UserFacingError, match="384-d units"):
        SVCModule(net=meta["net"], dataset_info=dict(info, unit_dim=768), segment_size=16000,
                  use_discriminator=False, init_from="tiny-base")
    with pytest.raises(UserFacingError, match="other model settings"):
        SVCModule(net=dict(meta["net"], hidden_channels=64), dataset_info=info, segment_size=16000,
                  use_discriminator=False, init_from="tiny-base")
    # a setting the base does not share is refused by name, also where the base's metadata predates the setting
    # (a base written before it existed has its default, 1)
    assert meta["net"].get("ddsp_noise_steps", 1) == 1
    older = save_base(state, tmp_path / "older.safetensors",
                      dict(meta, net={k: v for k, v in meta["net"].items() if k != "ddsp_noise_steps"}))
    for base in ("tiny-base", str(older)):
        with pytest.raises(UserFacingError, match=r"other model settings \(ddsp_noise_steps\)"):
            SVCModule(net=dict(meta["net"], ddsp_noise_steps=4), dataset_info=info, segment_size=16000,
                      use_discriminator=False, init_from=base)
    card = path.with_suffix(".md").read_text()
    assert "F0" in card and "steps" in card
    json.loads(path.with_name("tiny-base-eval.json").read_text())


def test_configs_by_name(capsys):
    from svc_pl.cli import main as cli_main
    from svc_pl.cli.fit import resolve_config_args, shipped_configs

    assert {"tiny", "tiny-nsf", "44k", "44k-tiny"} <= set(shipped_configs())
    args = resolve_config_args(["fit", "--config", "tiny", "--config=44k", "--data.dataset_dir", "tiny"])
    assert args[2].endswith("svc_pl/configs/tiny.yaml") and args[3].endswith("svc_pl/configs/44k.yaml")
    assert args[-1] == "tiny"  # only --config values are names
    assert cli_main(["config", "tiny"]) == 0
    assert "decoder: ddsp" in capsys.readouterr().out
    assert cli_main(["config", "nope"]) != 0
