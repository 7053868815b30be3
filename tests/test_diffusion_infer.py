"""Shallow and diffusion-only conversion: the diffusion stage in the converter and through svc-pl infer, its
checks before any work, and svc-pl export of a diffusion training checkpoint."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from svc_pl.cli import main as cli_main
from svc_pl.compat import load_sovits_diffusion, save_sovits, sovits_config_for, write_json_atomic
from svc_pl.compat.diffusion import save_sovits_diffusion
from svc_pl.data.content import random_content_encoder
from svc_pl.diffusion.gaussian import METHODS
from svc_pl.diffusion.model import MelDiffusion
from svc_pl.errors import UserFacingError
from svc_pl.infer.converter import Converter, ConvertOptions
from svc_pl.infer.diffusion import load_diffusion_stage
from svc_pl.infer.enhancer import Enhancer
from svc_pl.infer.loading import load_voice_model
from svc_pl.synthesizer import Synthesizer
from tests.speech import synth_speech
from tests.test_enhancer import CONFIG as VOCODER_CONFIG
from tests.test_enhancer import _write_vocoder
from tests.test_infer import TINY, write_tiny_voice

SR, HOP, N_MELS = 16000, 320, 16  # the synthesizer's, the vocoder's and the diffusion model's
SPEAKERS = {"alto": 0, "tenor": 1, "bass": 2}
VOCODER = {**VOCODER_CONFIG, "sampling_rate": SR, "hop_size": HOP, "num_mels": N_MELS, "n_fft": 1024, "win_size": 1024,
           "fmax": 8000.0, "upsample_rates": [5, 4, 4, 4], "upsample_kernel_sizes": [11, 8, 8, 8]}


def _diffusion(path, unit_dim=768, speakers=SPEAKERS, k_step_max=0, n_mels=N_MELS, seed=0, **data):
    """A tiny random so-vits-svc diffusion model_0.pt + diffusion.yaml in folder ``path``. The denoiser's output
    projection starts at zero (noise predicted as 0 whatever the condition): made random so units, F0, volume and
    speaker move the mel."""
    torch.manual_seed(seed)
    model = MelDiffusion(unit_dim=unit_dim, n_speakers=len(speakers), n_mels=n_mels, n_layers=2, n_chans=8,
                         n_hidden=8, timesteps=100, k_step_max=k_step_max)
    with torch.no_grad():
        model.decoder.denoise_fn.output_projection.weight.normal_(0, 0.3)
        if len(speakers) > 1:
            model.spk_embed.weight.mul_(3)
    path.mkdir(parents=True, exist_ok=True)
    save_sovits_diffusion(model, path / "model_0.pt", path / "diffusion.yaml", speakers=speakers,
                          **{"sampling_rate": SR, "block_size": HOP, "encoder": "vec768l12", **data})
    return path / "model_0.pt"


def write_voice_and_vocoder(d):
    """A random TINY voice (``d/G_1.pth`` + ``d/config.json``, speakers alto, tenor, bass at 16 kHz / hop 320) and
    a matching openvpi vocoder folder (``d/vocoder``); returns d."""
    write_tiny_voice(d)
    _write_vocoder(d / "vocoder", VOCODER)
    return d


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Voice model (G_1.pth), full and shallow-only diffusion models, vocoder folder and 1.2 s of speech."""
    d = write_voice_and_vocoder(tmp_path_factory.mktemp("diffusion_infer"))
    synth_speech(d / "speech.wav", "Shallow diffusion, please.")
    y, sr = sf.read(d / "speech.wav", dtype="float32")
    sf.write(d / "clip.wav", y[: int(1.2 * sr)], sr, subtype="FLOAT")
    return {"voice": d / "G_1.pth", "full": _diffusion(d / "full"), "shallow": _diffusion(d / "shallow", k_step_max=50),
            "vocoder": d / "vocoder", "clip": d / "clip.wav", "dir": d}


@pytest.fixture(scope="module")
def voice(files):
    return load_voice_model(files["voice"])


@pytest.fixture(scope="module")
def encoder():
    return random_content_encoder("vec768l12")


def _stage(files, voice, model="full", k_step=20, only=False):
    return load_diffusion_stage(files[model], None, files["vocoder"], voice=voice, unit_dim=768, k_step=k_step,
                                only_diffusion=only, speakers=["tenor"])


def _convert(conv, files, **kw):
    y, sr = sf.read(files["clip"], dtype="float32")
    return conv.convert(y, sr, ConvertOptions(speaker="tenor", precision="fp32", backend="torch", **kw))


def test_shallow_diffusion_keeps_the_length_and_changes_the_audio(files, voice, encoder):
    plain = _convert(Converter(voice, encoder), files)
    conv = Converter(voice, encoder, diffusion=_stage(files, voice))
    out = _convert(conv, files, shallow_diffusion=True, k_step=20, diffusion_speedup=5)
    assert out.shape == plain.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out - plain).max() > 1e-3
    assert np.array_equal(_convert(conv, files), plain)  # the stage is used only when asked for


def test_k_step_0_is_the_vocoder_on_the_synthesizer_mel(files, voice, encoder, monkeypatch):
    """At k_step 0 the diffusion is an identity: the output is the vocoder run on the synthesizer's mel, which is
    what the enhancer (same vocoder, no key shift) computes; k_step 20 moves away from it. The vocoder's sine
    source draws random phases and noise: both paths get the same draws."""
    from svc_pl.layers.nsf import SourceModuleHnNSF

    source = SourceModuleHnNSF.forward

    def seeded(self, f0, upp):
        torch.manual_seed(0)
        return source(self, f0, upp)

    monkeypatch.setattr(SourceModuleHnNSF, "forward", seeded)
    conv = Converter(voice, encoder, diffusion=_stage(files, voice))
    at0 = _convert(conv, files, shallow_diffusion=True, k_step=0)
    enhanced = _convert(Converter(voice, encoder, enhancer=Enhancer.from_pretrained(files["vocoder"])), files)
    np.testing.assert_allclose(at0, enhanced, atol=1e-6)
    at20 = _convert(conv, files, shallow_diffusion=True, k_step=20, diffusion_speedup=5)
    assert np.abs(at20 - at0).max() > 1e-3


def test_seeded_diffusion_is_reproducible(files, voice, encoder):
    conv = Converter(voice, encoder, diffusion=_stage(files, voice))
    kw = dict(shallow_diffusion=True, k_step=40, diffusion_speedup=10)
    a, b = _convert(conv, files, seed=3, **kw), _convert(conv, files, seed=3, **kw)
    assert np.array_equal(a, b)
    assert np.abs(a - _convert(conv, files, seed=4, **kw)).max() > 1e-4


def test_windowed_vocoder_renders_what_the_whole_piece_gives(files, voice, encoder, monkeypatch):
    """--decode-window also windows the vocoder after diffusion (one kernel shape per piece length, a working set
    that does not grow with the piece): the same audio as rendering whole pieces, and really in windows."""
    conv = Converter(voice, encoder, diffusion=_stage(files, voice))
    kw = dict(shallow_diffusion=True, k_step=20, diffusion_speedup=5, seed=3, min_chunk_seconds=10.0)
    whole = _convert(conv, files, decode_window=0, **kw)
    calls = []
    vocoder = conv.diffusion.vocoder
    decode = vocoder.decode
    monkeypatch.setattr(vocoder, "decode", lambda x, *a, **k: calls.append(x.shape[-1]) or decode(x, *a, **k))
    windowed = _convert(conv, files, decode_window=4, **kw)
    assert len(calls) > 2 and len(set(calls)) == 1, calls  # windows, all of one length
    np.testing.assert_allclose(windowed, whole, atol=1e-5)


def test_second_encoding_and_speaker_keyframes_reach_the_diffusion(files, voice, encoder):
    """--second-encoding changes the shallow-diffusion audio; in diffusion-only conversion (no synthesizer, so only
    the diffusion model sees the speaker) constant keyframes equal the named speaker and moving ones do not."""
    conv = Converter(voice, encoder, diffusion=_stage(files, voice))
    kw = dict(shallow_diffusion=True, k_step=20, diffusion_speedup=5)
    assert np.abs(_convert(conv, files, second_encoding=True, **kw) - _convert(conv, files, **kw)).max() > 1e-4
    stage = _stage(files, None, k_step=100, only=True)
    only = Converter(stage.voice_model(), encoder, diffusion=stage)
    kw = dict(only_diffusion=True, diffusion_speedup=20)
    tenor = _convert(only, files, **kw)
    steady = _convert(only, files, speaker_keyframes=[(0.0, {"tenor": 1.0}), (9.0, {"tenor": 1.0})], **kw)
    moving = _convert(only, files, speaker_keyframes=[(0.0, {"tenor": 1.0}), (1.0, {"bass": 1.0})], **kw)
    np.testing.assert_allclose(steady, tenor, atol=1e-5)
    assert np.abs(moving - tenor).max() > 1e-3


def _spy(conv, monkeypatch):
    """Record the synthesizer's output audio and the volume the diffusion model is given, per call."""
    seen = {"audio": [], "vol_in": [], "volume": []}
    net, model = conv.model.net, conv.diffusion.model
    synth, diffuse = net.infer, model.infer

    def synth_spy(*a, **k):
        audio, f0 = synth(*a, **k)
        seen["audio"].append(audio[:, 0].float().clone())
        seen["vol_in"].append(k.get("vol"))
        return audio, f0

    def diffuse_spy(units, f0, volume, *a, **k):
        seen["volume"].append(volume[..., 0].clone())  # (B, N)
        return diffuse(units, f0, volume, *a, **k)

    monkeypatch.setattr(net, "infer", synth_spy)
    monkeypatch.setattr(model, "infer", diffuse_spy)
    return seen


def test_diffusion_volume_is_the_synthesized_audio_s_without_vol_embedding(files, voice, encoder, monkeypatch):
    """As so-vits-svc 4.1 (``Svc.infer``): a synthesizer without vol_embedding gives the diffusion model the frame
    RMS volume of its own output, not the source's."""
    from svc_pl.data.audio import frame_volume

    assert not voice.net.vol_embedding
    conv = Converter(voice, encoder, diffusion=_stage(files, voice))
    seen = _spy(conv, monkeypatch)
    _convert(conv, files, shallow_diffusion=True, k_step=20, diffusion_speedup=5)
    assert len(seen["volume"]) == len(seen["audio"]) >= 1
    for audio, vol in zip(seen["audio"], seen["volume"]):
        n = vol.shape[-1]
        assert audio.shape[-1] == n * HOP
        want = np.stack([frame_volume(row, HOP, n) for row in audio.numpy()])
        np.testing.assert_allclose(vol.numpy(), want, rtol=1e-5, atol=1e-7)
        assert want.max() > 1e-3  # the synthesizer made sound: the check is not between two silences


def test_diffusion_volume_is_the_source_s_with_vol_embedding_and_only_diffusion(files, encoder, monkeypatch):
    """A synthesizer with vol_embedding and diffusion-only conversion give the diffusion model the source's frame
    RMS volume (the one the synthesizer was driven by), which differs from the synthesized audio's."""
    from svc_pl.data.audio import frame_volume

    d = files["dir"] / "vol_embedding"
    if not d.exists():
        d.mkdir()
        torch.manual_seed(0)
        kw = {**TINY, "vol_embedding": True}
        save_sovits(Synthesizer(**kw, spec_channels=513, segment_size=20), d / "G_1.pth")
        write_json_atomic(d / "config.json", sovits_config_for(kw, SPEAKERS, hop_length=HOP, filter_length=1024,
                                                               win_length=1024, segment_size_samples=6400).to_dict())
    voice = load_voice_model(d / "G_1.pth")
    assert voice.net.vol_embedding
    y, sr = sf.read(files["clip"], dtype="float32")
    opts = ConvertOptions(speaker="tenor", precision="fp32", backend="torch", shallow_diffusion=True, k_step=20,
                          diffusion_speedup=5)
    conv = Converter(voice, encoder, diffusion=_stage(files, voice))
    y_model, _, pieces = conv._prepare(y, sr, opts)  # the source at the model rate, and its pieces
    pad = int(round(opts.pad_seconds * SR / HOP)) * HOP
    assert len(pieces) == 1  # one piece: its padded source is built here as the converter builds it
    seen = _spy(conv, monkeypatch)
    conv.convert(y, sr, opts)
    (audio,), (vol,), (vol_in,) = seen["audio"], seen["volume"], seen["vol_in"]
    n, p = vol.shape[-1], pieces[0]
    seg = np.zeros(n * HOP, np.float32)
    seg[pad:pad + p.end - p.start] = y_model[p.start:p.end]
    source = frame_volume(seg, HOP, n)[None]
    np.testing.assert_allclose(vol.numpy(), source, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(vol_in.cpu().numpy(), source, rtol=1e-5, atol=1e-7)  # what the synthesizer got
    synthesized = np.stack([frame_volume(row, HOP, n) for row in audio.numpy()])
    assert np.abs(synthesized - source).max() > 1e-2  # the two candidates differ, so the check tells them apart

    stage = _stage(files, None, k_step=100, only=True)
    only = Converter(stage.voice_model(), encoder, diffusion=stage)
    vols, diffuse = [], stage.model.infer

    def diffuse_spy(units, f0, volume, *a, **k):
        vols.append(volume[..., 0].clone())
        return diffuse(units, f0, volume, *a, **k)

    monkeypatch.setattr(stage.model, "infer", diffuse_spy)
    only.convert(y, sr, ConvertOptions(speaker="tenor", precision="fp32", only_diffusion=True, diffusion_speedup=20))
    (vol,) = vols
    assert vol.shape[-1] == n
    np.testing.assert_allclose(vol.numpy(), source, rtol=1e-5, atol=1e-7)


def _infer(*args):
    return cli_main(["infer", *map(str, args), "--random-encoder", "--no-progress", "--precision", "fp32",
                     "--backend", "torch"])  # spies watch the torch synthesizer


@pytest.mark.parametrize("method", METHODS)
def test_each_sampler_through_the_cli(files, tmp_path, method, monkeypatch):
    from svc_pl.diffusion import samplers

    ran = []  # the sampler functions that ran, and dpm_solver's ``plus``: the method asked for, not the default

    def spy(name, fn):
        return lambda *a, **k: ran.append((name, k.get("plus"))) or fn(*a, **k)

    for name in ("ddpm", "ddim", "pndm", "dpm_solver", "unipc"):
        monkeypatch.setattr(samplers, name, spy(name, getattr(samplers, name)))
    out = tmp_path / "out"
    code = _infer(files["clip"], "-o", out, "-m", files["voice"], "-s", "alto", "--shallow-diffusion",
                  "--diffusion-model", files["full"], "--vocoder", files["vocoder"], "--k-step", "20",
                  "--diffusion-method", method, "--diffusion-speedup", "5")
    assert code == 0
    y, sr = sf.read(out / "clip.wav", dtype="float32")
    src = sf.info(files["clip"])
    assert sr == SR and abs(len(y) - round(src.frames * SR / src.samplerate)) <= 1 and np.isfinite(y).all()
    assert np.abs(y).max() > 0
    expected = {"dpm-solver": ("dpm_solver", False), "dpm-solver++": ("dpm_solver", True)}
    assert ran and set(ran) == {expected.get(method, (method, None))}, ran


def test_only_diffusion_without_a_voice_model(files, tmp_path, capsys):
    """--only-diffusion needs no -m (the rate, speakers and encoder come from diffusion.yaml); the --enhancer folder
    serves as the vocoder when --vocoder is not given."""
    code = _infer(files["clip"], "-o", tmp_path / "out", "--only-diffusion", "--diffusion-model", files["full"],
                  "--enhancer", files["vocoder"], "-s", "bass", "--diffusion-speedup", "20")
    assert code == 0, capsys.readouterr().err
    y, sr = sf.read(tmp_path / "out" / "clip.wav", dtype="float32")
    src = sf.info(files["clip"])
    assert sr == SR and abs(len(y) - round(src.frames * SR / src.samplerate)) <= 1
    assert np.isfinite(y).all() and np.abs(y).max() > 0
    assert _infer(files["clip"], "-o", tmp_path / "o2", "--diffusion-model", files["full"]) == 2  # -m needed now
    assert "-m/--model" in capsys.readouterr().err


@pytest.mark.slow
def test_bf16_shallow_diffusion_through_the_cli_stays_close_to_fp32(files, tmp_path, monkeypatch):
    """svc-pl infer --shallow-diffusion --precision bf16 runs the diffusion network under bf16 (its noise predictions
    come out in bf16; the vocoder stays fp32), and with the same seed the output stays close to fp32's.

    The bound: measured 0.049-0.065 (k_step 0, 40, 100; seeds 3 and 4). Nearly all of it is the random tiny
    synthesizer's own bf16 error (bf16 in the synthesizer alone: 0.061 at k_step 40; the diffusion network alone
    0.0002, the content encoder 0.0001), of the order of the small parity model's bf16 error in the README's
    fidelity table (28.6 dB, 0.037). 0.12 leaves about 2x for other CPUs' bf16 kernels and stays a third of what
    changing the seed in fp32 moves the output (0.36 at k_step 40): a broken bf16 path lands far above it."""
    from svc_pl.infer.runtime import resolve_precision
    from svc_pl.layers.diffusion import WaveNetDenoiser

    if resolve_precision("auto", "cpu") != "bf16":
        pytest.skip("this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so precision 'auto' never picks bf16 "
                    "here: svc_pl.infer.runtime.resolve_precision")
    denoise, dtypes = WaveNetDenoiser.denoise, set()

    def spy(self, *a, **k):
        eps = denoise(self, *a, **k)
        dtypes.add(eps.dtype)
        return eps

    monkeypatch.setattr(WaveNetDenoiser, "denoise", spy)
    out = {}
    for precision in ("fp32", "bf16"):
        dtypes.clear()
        code = cli_main(["infer", str(files["clip"]), "-o", str(tmp_path / precision), "-m", str(files["voice"]),
                         "-s", "alto", "--shallow-diffusion", "--diffusion-model", str(files["full"]), "--vocoder",
                         str(files["vocoder"]), "--k-step", "40", "--diffusion-speedup", "10", "--seed", "3",
                         "--random-encoder", "--no-progress", "--precision", precision])
        assert code == 0
        assert dtypes == {torch.float32 if precision == "fp32" else torch.bfloat16}, (precision, dtypes)
        out[precision], sr = sf.read(tmp_path / precision / "clip.wav", dtype="float32")
    fp32, bf16 = out["fp32"], out["bf16"]
    assert sr == SR and bf16.shape == fp32.shape and np.isfinite(bf16).all()
    rel = np.sqrt(np.mean((fp32 - bf16) ** 2)) / max(1e-9, np.sqrt(np.mean(fp32**2)))
    assert 0 < rel < 0.12, rel  # bf16 really ran (the audio moved) and stayed close (measured: 0.061)


def _bad_cases(files):
    d = files["dir"] / "bad"
    if not d.exists():
        _diffusion(d / "units256", unit_dim=256)
        _diffusion(d / "speakers", speakers={"soprano": 0, "alto": 1})
        _write_vocoder(d / "vocoder20", {**VOCODER, "num_mels": 20})
        _write_vocoder(d / "vocoder_hop", {**VOCODER, "hop_size": 256, "upsample_rates": [4, 4, 4, 4],
                                           "upsample_kernel_sizes": [8, 8, 8, 8]})
    shallow = ["-m", files["voice"], "--shallow-diffusion", "--vocoder", files["vocoder"]]
    return {
        "k_step": ([*shallow, "--diffusion-model", files["shallow"], "--k-step", "60"], "k_step_max 50"),
        "unit_dim": ([*shallow, "--diffusion-model", d / "units256" / "model_0.pt"], "256-d units"),
        "speaker": ([*shallow, "--diffusion-model", d / "speakers" / "model_0.pt", "-s", "tenor"], "soprano (0)"),
        "no_vocoder": (["-m", files["voice"], "--shallow-diffusion", "--diffusion-model", files["full"]], "--vocoder"),
        "mels": (["-m", files["voice"], "--shallow-diffusion", "--diffusion-model", files["full"], "--vocoder",
                  d / "vocoder20"], "20 mel bins"),
        "hop": (["-m", files["voice"], "--shallow-diffusion", "--diffusion-model", files["full"], "--vocoder",
                 d / "vocoder_hop"], "hop 256"),
        "speedup": ([*shallow, "--diffusion-model", files["full"], "--k-step", "8", "--diffusion-method", "unipc"],
                    "--diffusion-speedup 8 or less"),
        "shallow_only": (["--only-diffusion", "--diffusion-model", files["shallow"], "--vocoder", files["vocoder"]],
                         "shallow diffusion only"),
    }


@pytest.mark.parametrize("case", ["k_step", "unit_dim", "speaker", "no_vocoder", "mels", "hop", "speedup",
                                  "shallow_only"])
def test_clear_errors_before_any_output(files, tmp_path, capsys, case, monkeypatch):
    args, expected = _bad_cases(files)[case]
    from svc_pl.infer import converter

    def no_work(*a, **k):
        raise AssertionError("audio was processed before the check")

    monkeypatch.setattr(converter.Converter, "_prepare", no_work)
    code = _infer(files["clip"], "-o", tmp_path / "out", *args)
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*"))


def test_a_diffusion_checkpoint_that_runs_code_is_refused(files, tmp_path, capsys):
    from tests.test_malicious import _evil_torch_file

    marker = tmp_path / "ran"
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "diffusion.yaml").write_bytes((files["full"].parent / "diffusion.yaml").read_bytes())
    model = torch.load(files["full"], weights_only=True)["model"]
    path = _evil_torch_file(tmp_path / "evil" / "model_0.pt", marker, model=model)
    code = _infer(files["clip"], "-o", tmp_path / "out", "-m", files["voice"], "--shallow-diffusion",
                  "--diffusion-model", path, "--vocoder", files["vocoder"])
    err = capsys.readouterr().err
    assert code == 2 and "nothing in it ran" in err and not marker.exists(), err[-2000:]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*"))


def test_speaker_maps_by_name(files, voice):
    """The diffusion model's speakers are found by name, not by the voice model's id."""
    d = files["dir"] / "renamed"
    _diffusion(d, speakers={"bass": 0, "alto": 1, "tenor": 2})
    stage = load_diffusion_stage(d / "model_0.pt", None, files["vocoder"], voice=voice, unit_dim=768, k_step=10,
                                 only_diffusion=False, speakers=["alto", "tenor"])
    assert stage.speaker_map.argmax(1).tolist() == [1, 2, 0]
    with pytest.raises(UserFacingError, match="not in the diffusion model"):
        load_diffusion_stage(files["dir"] / "bad" / "speakers" / "model_0.pt", None, files["vocoder"], voice=voice,
                             unit_dim=768, k_step=10, only_diffusion=False, speakers=["alto", "bass"])


def test_export_diffusion_checkpoint(tmp_path, capsys):
    """svc-pl export turns a svc-pl fit --config diffusion checkpoint into so-vits-svc's model_<step>.pt +
    diffusion.yaml, which load back with the same weights."""
    from svc_pl.lightning.diffusion_module import DiffusionModule

    torch.manual_seed(1)
    module = DiffusionModule(diffusion={"n_layers": 2, "n_chans": 8, "n_hidden": 8, "timesteps": 100},
                             dataset_info={"speakers": {"a": 0, "b": 1}, "unit_dim": 32, "sampling_rate": SR,
                                           "hop_length": HOP, "filter_length": 1024, "win_length": 1024},
                             n_mels=N_MELS)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 7,
            "epoch": 1}
    torch.save(ckpt, tmp_path / "last.ckpt")
    assert cli_main(["export", str(tmp_path / "last.ckpt"), "-o", str(tmp_path / "out")]) == 0
    model = load_sovits_diffusion(tmp_path / "out" / "model_7.pt", tmp_path / "out" / "diffusion.yaml")
    for k, v in module.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    cfg = yaml.safe_load((tmp_path / "out" / "diffusion.yaml").read_text())
    assert cfg["spk"] == {"a": 0, "b": 1} and cfg["data"]["block_size"] == HOP
    assert os.path.basename(capsys.readouterr().out.split()[-1]) in ("diffusion.yaml", "model_7.pt")
