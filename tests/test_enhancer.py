"""NSF-HiFiGAN enhancer: openvpi vocoder loading, its mel front end, and enhance() semantics."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from svc_pl.compat import to_sovits_state_dict
from svc_pl.errors import CheckpointMismatchError, ConfigError, UserFacingError
from svc_pl.infer.enhancer import Enhancer, VocoderConfig, load_openvpi_vocoder
from svc_pl.layers.conv import remove_all_weight_norm

SR, HOP, N_FFT, N_MELS, FMIN, FMAX = 44100, 512, 2048, 128, 40.0, 16000.0
CONFIG = {
    "resblock": "1",
    "num_gpus": 1,
    "batch_size": 8,
    "learning_rate": 0.0002,  # training keys: ignored
    "upsample_rates": [8, 8, 2, 2, 2],
    "upsample_kernel_sizes": [16, 16, 4, 4, 4],
    "upsample_initial_channel": 32,
    "resblock_kernel_sizes": [3],
    "resblock_dilation_sizes": [[1, 3, 5]],
    "discriminator_periods": [3, 5, 7],
    "segment_size": 16384,
    "num_mels": N_MELS,
    "num_freq": 1025,
    "n_fft": N_FFT,
    "hop_size": HOP,
    "win_size": N_FFT,
    "sampling_rate": SR,
    "fmin": FMIN,
    "fmax": FMAX,
    "fmax_for_loss": None,
}


def _write_vocoder(directory, config=CONFIG, seed=0):
    """An openvpi-layout vocoder directory with random weights under legacy weight-norm names."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    net = VocoderConfig.from_json(directory / "config.json").build()
    state = to_sovits_state_dict(net)
    assert any(k.endswith(".weight_g") for k in state) and not any("parametrizations" in k for k in state)
    torch.save({"generator": state}, directory / "model")
    return net


@pytest.fixture(scope="module")
def vocoder_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("nsf_hifigan")
    net = _write_vocoder(directory)
    remove_all_weight_norm(net)
    return directory, net.eval()


@pytest.fixture(scope="module")
def enhancer(vocoder_dir):
    return Enhancer.from_pretrained(vocoder_dir[0])


def _reference_mel(audio, mel_basis):
    """nvSTFT.get_mel written out: reflect pad, uncentred STFT, sqrt(|X|² + 1e-9), mel, log(clamp 1e-5)."""
    pad = (N_FFT - HOP) // 2
    y = torch.nn.functional.pad(audio.unsqueeze(1), (pad, (N_FFT - HOP + 1) // 2), mode="reflect").squeeze(1)
    spec = torch.stft(
        y,
        N_FFT,
        hop_length=HOP,
        win_length=N_FFT,
        window=torch.hann_window(N_FFT),
        center=False,
        return_complex=True,
    )
    mag = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    return torch.log(torch.clamp(mel_basis @ mag, min=1e-5))


def test_mel_matches_nvstft(enhancer):
    librosa = pytest.importorskip("librosa")
    bank = torch.from_numpy(librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX))
    audio = 0.5 * torch.randn(2, 20000, generator=torch.Generator().manual_seed(1))
    basis = enhancer.mel.mel_basis
    ours = enhancer.mel(audio)
    ref = _reference_mel(audio, bank)
    assert ours.shape == ref.shape == (2, N_MELS, 20000 // HOP)
    assert (ours - ref).abs().max().item() < 1e-5
    assert enhancer.mel.mel_basis is basis  # a buffer built once, not per call
    assert "mel_basis" not in enhancer.state_dict() and "mel.mel_basis" not in enhancer.state_dict()


def test_short_audio_is_zero_padded_to_one_frame(enhancer):
    assert enhancer.mel(torch.randn(1, 300)).shape == (1, N_MELS, 1)


def test_loaded_vocoder_equals_the_saved_network(vocoder_dir, enhancer):
    _, net = vocoder_dir
    loaded, cfg = load_openvpi_vocoder(vocoder_dir[0] / "model")  # the file works as well as the directory
    assert cfg.hop_size == HOP and cfg.upsample_rates == (8, 8, 2, 2, 2) and cfg.fmax == FMAX
    assert not any("parametrizations" in k for k in loaded.state_dict())  # weight norm folded
    mel, f0 = torch.randn(1, N_MELS, 12), torch.full((1, 12), 220.0)
    with torch.no_grad():
        torch.manual_seed(3)
        expected = net(mel, f0)
        torch.manual_seed(3)
        got = loaded(mel, f0)
    assert got.shape == (1, 1, 12 * HOP)
    assert torch.allclose(got, expected, atol=1e-6)


def _expected_length(n, orig, new):
    g = math.gcd(orig, new)
    return math.ceil(n * (new // g) / (orig // g))


@pytest.mark.parametrize("key", [0, 3])
def test_enhance_length(enhancer, key):
    n = SR  # one second
    audio = 0.3 * torch.sin(torch.arange(n) * 2 * math.pi * 220 / SR).unsqueeze(0)
    f0 = torch.full((1, n // HOP + 1, 1), 220.0)
    adaptive = 100 * int(np.round(SR * 2 ** (key / 12) / 100))
    assert adaptive == (SR if key == 0 else 52400)
    expected = (_expected_length(n, SR, adaptive) // HOP) * HOP
    expected = _expected_length(expected, adaptive, SR)
    out, sr = enhancer.enhance(audio, SR, f0, HOP, adaptive_key=key)
    assert sr == SR and out.shape == (1, expected) and torch.isfinite(out).all()
    assert f"{SR}_{adaptive}" in enhancer.resamplers or key == 0  # resamplers cached per rate pair


def test_enhance_is_the_vocoder_on_the_mel_for_key_0(enhancer):
    n = 30 * HOP + 100
    audio = 0.3 * torch.randn(1, n, generator=torch.Generator().manual_seed(0))
    f0 = torch.linspace(150, 300, n // HOP + 1).view(1, -1, 1)
    torch.manual_seed(5)
    out, _ = enhancer.enhance(audio, SR, f0, HOP)
    torch.manual_seed(5)
    with torch.no_grad():
        mel = enhancer.mel(audio)
        ref = enhancer.vocoder(mel, f0.view(1, -1)[:, : mel.size(-1)]).view(1, -1)
    assert torch.equal(out, ref)


def test_enhance_silence_front(enhancer):
    n = SR
    audio = 0.3 * torch.randn(1, n, generator=torch.Generator().manual_seed(0))
    f0 = torch.full((1, n // HOP + 1, 1), 200.0)
    out, _ = enhancer.enhance(audio, SR, f0, HOP, silence_front=0.1)
    start = int(0.1 * SR / HOP) * HOP  # 8 whole frames
    assert out.shape == (1, start + ((n - start) // HOP) * HOP)
    assert torch.all(out[:, :start] == 0) and out[:, start:].abs().max() > 0
    # with an F0 at a different hop (e.g. the synthesizer's) and adaptive key
    out, _ = enhancer.enhance(
        audio, SR, torch.full((1, n // 256 + 1, 1), 200.0), 256, adaptive_key=3, silence_front=0.1
    )
    start = int(0.1 * SR / 256) * 256
    assert torch.all(out[:, :start] == 0)
    with pytest.raises(ValueError, match="silence_front"):
        enhancer.enhance(audio, SR, f0, HOP, silence_front=5.0)


def test_wrong_paths_give_clear_errors(tmp_path, vocoder_dir):
    with pytest.raises(UserFacingError, match="NSF-HiFiGAN directory"):
        load_openvpi_vocoder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserFacingError, match="'model' and 'config.json'"):
        load_openvpi_vocoder(tmp_path / "empty")
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    (no_config / "model").write_bytes((vocoder_dir[0] / "model").read_bytes())
    with pytest.raises(ConfigError, match="config.json"):
        load_openvpi_vocoder(no_config)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text(json.dumps(CONFIG))
    (corrupt / "model").write_bytes(b"not a checkpoint")
    with pytest.raises(UserFacingError, match="cannot be read"):
        load_openvpi_vocoder(corrupt)
    torch.save({"model": {}}, corrupt / "model")
    with pytest.raises(UserFacingError, match="no 'generator'"):
        load_openvpi_vocoder(corrupt)
    (corrupt / "config.json").write_text(json.dumps({**CONFIG, "hop_size": 256}))
    with pytest.raises(ConfigError, match="upsample_rates"):
        load_openvpi_vocoder(corrupt)
    (corrupt / "config.json").write_text(json.dumps({k: v for k, v in CONFIG.items() if k != "num_mels"}))
    with pytest.raises(ConfigError, match="missing num_mels"):
        load_openvpi_vocoder(corrupt)


def test_config_mismatch_lists_tensors(tmp_path, vocoder_dir):
    directory = tmp_path / "other"
    directory.mkdir()
    (directory / "model").write_bytes((vocoder_dir[0] / "model").read_bytes())
    (directory / "config.json").write_text(
        json.dumps(
            {
                **CONFIG,
                "num_mels": 80,
                "resblock_kernel_sizes": [3, 7],
                "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
            }
        )
    )
    with pytest.raises(CheckpointMismatchError) as err:
        load_openvpi_vocoder(directory)
    message = str(err.value)
    assert (
        "conv_pre.parametrizations.weight.original1: checkpoint (32, 128, 7) vs model (32, 80, 7)" in message
    )
    assert "resblocks.1.convs1.0" in message and "missing" in message


# Every key and shape of upstream's NSF-HiFiGAN Generator (so-vits-svc vdecoder/nsf_hifigan/models.py) built
# from the config layout openvpi publishes with its vocoder (44.1 kHz, hop 512, 128 mel bins, 512 channels):
# dumped from upstream's own module; the key names are what the ``generator`` entry of its ``model`` file holds.
OPENVPI = json.loads((Path(__file__).parent / "data" / "nsf_hifigan_openvpi_state_dict.json").read_text())


def test_openvpi_layout_matches_upstream(tmp_path):
    directory = tmp_path / "nsf_hifigan"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(OPENVPI["config"]))
    net = VocoderConfig.from_json(directory / "config.json").build()
    ours = {k: list(v.shape) for k, v in to_sovits_state_dict(net).items()}
    assert ours.keys() == OPENVPI["state_dict"].keys(), sorted(set(ours) ^ set(OPENVPI["state_dict"]))[:10]
    assert ours == OPENVPI["state_dict"]
    # a file holding exactly upstream's tensors (built from the list alone) loads and runs
    gen = torch.Generator().manual_seed(0)
    state = {k: 0.02 * torch.randn(shape, generator=gen) for k, shape in OPENVPI["state_dict"].items()}
    torch.save({"generator": state}, directory / "model")
    loaded, cfg = load_openvpi_vocoder(directory)
    assert (cfg.sampling_rate, cfg.hop_size, cfg.num_mels) == (44100, 512, 128)
    with torch.no_grad():
        out = loaded(torch.randn(1, 128, 3, generator=gen), torch.full((1, 3), 220.0))
    assert out.shape == (1, 1, 3 * 512) and torch.isfinite(out).all()


@pytest.mark.parametrize("key", [0, 3, -4])
def test_adaptive_key_scales_f0_and_time(enhancer, monkeypatch, key):
    """The vocoder runs at 100 * round(44100 * 2^(key/12) / 100) Hz played back as 44.1 kHz: its frame j is
    input time j * 512 / rate and its F0 there is the input F0 times 44100 / rate (so-vits-svc's enhancer).
    Checked on a glide 200 -> 300 Hz over 1 s, F0 given at hop 256."""
    seen = []
    forward = enhancer.vocoder.forward

    def record(mel, f0):
        seen.append((mel.shape[-1], f0.detach().clone()))
        return forward(mel, f0)

    monkeypatch.setattr(enhancer.vocoder, "forward", record)
    n, hop = SR, 256
    t_frames = np.arange(n // hop + 1) * hop / SR
    f0_in = torch.from_numpy(200.0 + 100.0 * t_frames).view(1, -1, 1)
    audio = 0.3 * torch.sin(2 * math.pi * 220 * torch.arange(n) / SR).unsqueeze(0)
    enhancer.enhance(audio, SR, f0_in, hop, adaptive_key=key)
    rate = {0: 44100, 3: 52400, -4: 35000}[key]  # 100 * round(44100 * 2^(key/12) / 100), by hand
    (frames, f0), = seen
    assert frames == (n * rate // SR) // HOP  # the mel frames of the resampled second
    t_vocoder = np.arange(frames) * HOP / rate  # input seconds at each vocoder frame
    inside = t_vocoder <= t_frames[-1]
    expected = (200.0 + 100.0 * t_vocoder) * SR / rate
    np.testing.assert_allclose(f0[0].numpy()[inside], expected[inside], rtol=1e-5)
