"""The Convert tab's settings beyond the basics (speaker mix, shallow diffusion and its k-step, the enhancer,
slicing, loudness, noise and auto F0, matching units), each through the page's API (``/convert_files``, the form Convert sends)
against ``svc-pl infer`` with the same flags: the same audio to 1e-5, and not the audio of the default settings
(a control the page drops fails here)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from svc_pl.cli import main as cli_main  # noqa: E402
from tests.speech import synth_speech  # noqa: E402
from tests.test_diffusion_infer import _diffusion, write_voice_and_vocoder  # noqa: E402
from tests.test_webui import ENCODER, random_encoder_client  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("webui_options")
    voice = write_voice_and_vocoder((d / "runs" / "voice").mkdir(parents=True) or d / "runs" / "voice")
    # made to respond to its inputs as tests/test_infer.py's lively_voice: with random weights the output is
    # mostly a DC offset and the speakers differ by about 1e-4
    ckpt = torch.load(voice / "G_1.pth", map_location="cpu", weights_only=True)
    sd = ckpt["model"]
    sd["emb_g.weight"] = sd["emb_g.weight"] * 100
    sd["dec.conv_post.bias"] = torch.zeros_like(sd["dec.conv_post.bias"])
    sd["dec.conv_post.weight_g"] = sd["dec.conv_post.weight_g"] * 5
    torch.save(ckpt, voice / "G_1.pth")
    from svc_pl.data.unit_stats import save_unit_stats

    g = torch.Generator().manual_seed(3)  # as svc-pl train-index writes it beside a so-vits-svc model
    save_unit_stats({name: {"mean": torch.randn(768, generator=g), "std": 0.5 + torch.rand(768, generator=g)}
                     for name in ("alto", "tenor", "bass")}, voice / "unit_stats.pt")
    diffusion = _diffusion(d / "runs" / "diffusion")
    wav = synth_speech(d / "in" / "phrase.wav", "Shallow diffusion, please, and a mix.")
    return {"dir": d, "runs": d / "runs", "model": voice / "G_1.pth", "vocoder": voice / "vocoder",
            "diffusion": diffusion, "wav": wav}


@pytest.fixture(scope="module")
def client(files):
    yield from random_encoder_client(files)


def page_convert(client, files, **settings) -> np.ndarray:
    form = dict(files=[gradio_client.handle_file(str(files["wav"]))], model=str(files["model"]), speaker="tenor",
                recording=None, uploaded_model=None, reference=None, diffusion_model=None, enhancer=None)
    out = client.predict(**{**form, **settings}, api_name="/convert_files")
    y, _ = sf.read(out[0], dtype="float32")
    return y


def cli_convert(files, out, *flags: str) -> np.ndarray:
    argv = ["infer", str(files["wav"]), "-o", str(out), "-m", str(files["model"]), *ENCODER, "-s", "tenor",
            "--no-progress", *flags]
    assert cli_main(argv) == 0
    y, _ = sf.read(out / "phrase.wav", dtype="float32")
    return y


def _cases(files) -> dict[str, tuple[dict, list[str]]]:
    """name -> (the page's settings, svc-pl infer's flags for the same)."""
    diff, voc = str(files["diffusion"]), str(files["vocoder"])
    shallow = dict(diffusion_model=diff, shallow_diffusion=True, diffusion_speedup=5, enhancer=voc)
    shallow_flags = ["--diffusion-model", diff, "--shallow-diffusion", "--diffusion-speedup", "5", "--enhancer", voc]
    return {
        "speaker mix": (dict(speaker_mix="alto:0.3, bass:0.7"), ["--speaker-mix", "alto:0.3,bass:0.7"]),
        "shallow diffusion k 20": ({**shallow, "k_step": 20}, [*shallow_flags, "--k-step", "20"]),
        "shallow diffusion k 40": ({**shallow, "k_step": 40, "diffusion_method": "ddim"},
                                   [*shallow_flags, "--k-step", "40", "--diffusion-method", "ddim"]),
        "enhancer": (dict(enhancer=voc), ["--enhancer", voc]),
        "enhancer key 2": (dict(enhancer=voc, enhancer_adaptive_key=2), ["--enhancer", voc, "--enhancer-adaptive-key",
                                                                          "2"]),
        "slicing": (dict(slice_db=-30, pad_seconds=0.2, clip_seconds=0.6, crossfade_seconds=0.1),
                    ["--slice-db", "-30", "--pad-seconds", "0.2", "--clip-seconds", "0.6", "--crossfade-seconds",
                     "0.1"]),
        "loudness, noise, auto F0": (dict(loudness_mix=0.3, noise_scale=0.8, auto_predict_f0=True),
                                     ["--loudness-mix", "0.3", "-n", "0.8", "--auto-predict-f0"]),
        "match units": (dict(match_units=1.0), ["--match-units", "1", "--unit-stats",
                                                 str(files["model"].parent / "unit_stats.pt")]),
    }


def test_each_setting_gives_what_svc_pl_infer_gives(client, files, tmp_path):
    default = page_convert(client, files)
    np.testing.assert_allclose(default, cli_convert(files, tmp_path / "default"), atol=1e-5, rtol=0)
    outputs = {}
    for i, (name, (settings, flags)) in enumerate(_cases(files).items()):
        web = page_convert(client, files, **settings)
        cli = cli_convert(files, tmp_path / str(i), *flags)
        assert web.shape == cli.shape, name
        np.testing.assert_allclose(web, cli, atol=1e-5, rtol=0, err_msg=name)
        if web.shape == default.shape:
            assert np.abs(web - default).max() > 1e-3, f"{name}: the setting changed nothing"
        outputs[name] = web
    for a, b in (("shallow diffusion k 20", "shallow diffusion k 40"), ("enhancer", "enhancer key 2")):
        assert np.abs(outputs[a] - outputs[b]).max() > 1e-3, f"{a} and {b} gave the same audio"


def _message(call) -> str:
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        call()
    return str(info.value)


def test_bad_settings_give_one_message(client, files):
    msg = _message(lambda: page_convert(client, files, speaker_mix="alto:lots"))
    assert "weight 'lots' of 'alto' is not a number" in msg, msg
    msg = _message(lambda: page_convert(client, files, speaker_mix="alto:1, nobody:1"))
    assert "unknown speaker 'nobody'" in msg, msg
    msg = _message(lambda: page_convert(client, files, shallow_diffusion=True))
    assert "shallow diffusion needs a diffusion model" in msg, msg
    msg = _message(lambda: page_convert(client, files, enhancer=str(files["dir"] / "nowhere")))
    assert "enhancer folder not found" in msg, msg
    assert page_convert(client, files).size > 0  # still working
