"""One definition of the model: the synthesizer's builder, the settings that follow the data, the configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from svc_pl.errors import ConfigError, UserFacingError
from svc_pl.synthesizer import DecoderHopMismatchError, NetConfig, Synthesizer

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "svc_pl" / "configs"
# the model block of so-vits-svc 4.1's configs_template/config_template.json (the spec NetConfig's defaults follow)
UPSTREAM_41_MODEL = {
    "inter_channels": 192, "hidden_channels": 192, "filter_channels": 768, "n_heads": 2, "n_layers": 6,
    "kernel_size": 3, "p_dropout": 0.1, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_rates": [8, 8, 2, 2, 2],
    "upsample_initial_channel": 512, "upsample_kernel_sizes": [16, 16, 4, 4, 4], "n_layers_q": 3,
    "n_layers_trans_flow": 3, "n_flow_layer": 4, "use_spectral_norm": False, "gin_channels": 768, "ssl_dim": 768,
    "n_speakers": 200, "vocoder_name": "nsf-hifigan", "speech_encoder": "vec768l12", "speaker_embedding": False,
    "vol_embedding": False, "use_depthwise_conv": False, "flow_share_parameter": False,
    "use_automatic_f0_prediction": True, "use_transformer_flow": False,
}
TINY_NSF = {"inter_channels": 16, "hidden_channels": 16, "filter_channels": 32, "n_layers": 1, "gin_channels": 8,
            "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]], "upsample_rates": [5, 4, 4, 4],
            "upsample_initial_channel": 16, "upsample_kernel_sizes": [11, 8, 8, 8]}
DATA_16K = {"sampling_rate": 16000, "hop_length": 320, "filter_length": 1024, "win_length": 1024, "unit_dim": 12,
            "n_speakers": 2, "speakers": {"a": 0, "b": 1}}
DATA_44K = dict(DATA_16K, sampling_rate=44100, hop_length=512, filter_length=2048, win_length=2048)


def _train_base_script():
    """scripts/train_base.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_base", REPO / "scripts" / "train_base.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _net(config: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{config}.yaml").read_text())["model"]["net"]


def test_defaults_are_the_41_template_and_written_once():
    from svc_pl.compat.config import TEMPLATE_41

    assert TEMPLATE_41["model"] == UPSTREAM_41_MODEL
    net = NetConfig().to_dict()
    assert {k: net[k] for k in net if k in UPSTREAM_41_MODEL} == {
        k: v for k, v in UPSTREAM_41_MODEL.items() if k in net}
    synth = Synthesizer()  # the constructor's defaults are NetConfig's
    assert synth.enc_p.out_channels == net["inter_channels"] and synth.dec.upp == 512
    assert synth.emb_g.weight.shape == (200, net["gin_channels"])


def test_builder_translates_data_settings():
    net = Synthesizer.from_config(TINY_NSF, DATA_16K, segment_frames=7)
    assert (net.ssl_dim, net.n_speakers, net.sampling_rate, net.hop_length, net.segment_size) == (12, 2, 16000, 320, 7)
    assert net.enc_q.pre.in_channels == 513  # filter_length // 2 + 1
    with pytest.raises(ValueError, match="unknown synthesizer setting"):
        Synthesizer.from_config(dict(TINY_NSF, hiden_channels=4), DATA_16K)
    ddsp = Synthesizer.from_config(_net("tiny"), DATA_44K)  # DDSP follows the dataset's hop
    assert ddsp.hop_length == 512 and ddsp.dec.upp == 512
    with pytest.raises(DecoderHopMismatchError) as err:
        Synthesizer.from_config(TINY_NSF, DATA_44K)
    assert "320" in str(err.value) and "512" in str(err.value) and "--hop-length 320" in str(err.value)


def test_module_loader_and_sovits_config_build_the_same_synthesizer(tmp_path):
    """The training module, the .ckpt loader (current and older hyper-parameter layouts) and the so-vits-svc
    config all go through Synthesizer.from_config: same tensors, same names."""
    from svc_pl.compat import save_sovits, sovits_config_for, write_json_atomic
    from svc_pl.compat.config import read_sovits_config
    from svc_pl.infer.loading import load_voice_model
    from svc_pl.lightning.module import SVCModule

    module = SVCModule(net=TINY_NSF, dataset_info=DATA_16K, segment_frames=20, discriminator_width=0.25)
    assert module.segment_size == 20 * 320 and module.hparams.segment_frames == 20
    state = {f"net.{k}": v for k, v in module.net.state_dict().items()}
    old = {k: v for k, v in module.hparams.items() if k != "segment_frames"} | {"segment_size": 6400}  # in samples
    for name, hp in (("new", dict(module.hparams)), ("old", old)):
        torch.save({"state_dict": state, "hyper_parameters": hp}, tmp_path / f"{name}.ckpt")
        vm = load_voice_model(tmp_path / f"{name}.ckpt")
        assert (vm.sampling_rate, vm.hop_length, vm.speakers) == (16000, 320, {"a": 0, "b": 1})
        assert vm.net.segment_size == 20
        ref = Synthesizer.from_config(TINY_NSF, DATA_16K, 20)
        ref.load_state_dict(module.net.state_dict())
        ref.prepare_for_inference()
        assert set(vm.net.state_dict()) == set(ref.state_dict())
        assert all(torch.equal(v, ref.state_dict()[k]) for k, v in vm.net.state_dict().items())

    from svc_pl.synthesizer import synthesizer_kwargs

    cfg = sovits_config_for(synthesizer_kwargs(TINY_NSF, DATA_16K), {"a": 0, "b": 1}, hop_length=320,
                            filter_length=1024, win_length=1024, segment_size_samples=6400)
    write_json_atomic(tmp_path / "config.json", cfg.to_dict())
    save_sovits(module.net, tmp_path / "G_1.pth")
    read = read_sovits_config(tmp_path / "config.json")
    assert read.net_config() == NetConfig.from_dict(TINY_NSF)
    assert read.synthesizer_kwargs() == synthesizer_kwargs(TINY_NSF, DATA_16K, 20)
    bad = cfg.to_dict()
    bad["data"]["hop_length"] = 512
    write_json_atomic(tmp_path / "bad.json", bad)
    with pytest.raises(ConfigError, match="bad.json.*multiply to 320.*hop_length is 512"):
        read_sovits_config(tmp_path / "bad.json").build()


def test_loading_and_converting_a_ckpt_never_imports_lightning(tmp_path):
    from svc_pl.lightning.module import SVCModule

    module = SVCModule(net=_net("tiny"), dataset_info=DATA_16K, use_discriminator=False)
    torch.save({"state_dict": {f"net.{k}": v for k, v in module.net.state_dict().items()},
                "hyper_parameters": dict(module.hparams)}, tmp_path / "m.ckpt")
    code = ("import sys, torch; from svc_pl.infer.loading import load_voice_model; "
            f"vm = load_voice_model({str(tmp_path / 'm.ckpt')!r}); "
            "audio, _ = vm.net.infer(torch.randn(1, 12, 25), torch.full((1, 25), 180.0), torch.ones(1, 25), 1); "
            "assert audio.shape == (1, 1, 25 * 320), audio.shape; "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning') "
            "or m.startswith('svc_pl.lightning')); assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_segment_is_given_in_frames_and_follows_the_hop():
    from svc_pl.lightning.module import SVCModule

    tiny = _net("tiny")
    assert SVCModule(net=tiny, dataset_info=DATA_16K, segment_frames=50, use_discriminator=False).segment_size == 16000
    at_44k = SVCModule(net=tiny, dataset_info=DATA_44K, segment_frames=50, use_discriminator=False)
    assert at_44k.segment_size == 50 * 512 and at_44k.net.hop_length == 512
    # the older form, in samples, still works where it is a whole number of frames, and says what to write if not
    assert SVCModule(net=_net("44k-tiny"), dataset_info=DATA_44K, segment_size=10240).segment_frames == 20
    with pytest.raises(UserFacingError, match="--model.segment_frames 31"):
        SVCModule(net=tiny, dataset_info=DATA_44K, segment_size=16000, use_discriminator=False)
    with pytest.raises(DecoderHopMismatchError, match="makes 320 samples per frame.*hop_length is 512"):
        SVCModule(net=_net("tiny-nsf"), dataset_info=DATA_44K)


def test_shipped_base_refuses_data_at_another_rate():
    from svc_pl.lightning.module import SVCModule
    from svc_pl.pretrained import load_base_synthesizer

    net, meta = load_base_synthesizer("tiny-base")
    assert (net.sampling_rate, net.hop_length, net.ssl_dim) == (16000, 320, 384) and not net.training
    with pytest.raises(UserFacingError, match="16000 Hz / hop 320.*--sampling-rate 16000 --hop-length 320"):
        SVCModule(net=meta["net"], dataset_info=dict(DATA_44K, unit_dim=384), use_discriminator=False,
                  init_from="tiny-base")


def test_base_as_checkpoint_gives_its_segment_in_frames(tmp_path):
    """scripts/train_base.py converts the base to a .ckpt stating ``segment_frames`` (its metadata's, or for a
    base written without it, its config's), never the old ``segment_size`` in samples."""
    from svc_pl.infer.loading import load_voice_model, read_ckpt
    from svc_pl.pretrained import load_base, pretrained_path, save_base

    script = _train_base_script()
    state, meta = load_base(pretrained_path("tiny-base"))
    with_frames = save_base(state, tmp_path / "with.safetensors", dict(meta, segment_frames=7))
    tiny = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())["model"]["segment_frames"]
    for base, frames in ((pretrained_path("tiny-base"), tiny), (with_frames, 7)):
        script._base_as_ckpt(tmp_path / "base.ckpt", base)
        hparams = read_ckpt(tmp_path / "base.ckpt")["hyper_parameters"]
        assert hparams["segment_frames"] == frames and "segment_size" not in hparams
        assert load_voice_model(tmp_path / "base.ckpt").net.segment_size == frames


def test_base_card_names_every_machine_that_trained_it(tmp_path):
    """The fit stage records the machine of each run; the export lists each once, in order, for the card."""
    script = _train_base_script()
    assert script._machines_of(tmp_path) == []
    here = script._this_machine()
    assert "core" in here or "NVIDIA" in here
    (tmp_path / script.MACHINES).write_text(f"2026-12-03\t{here}\t72 min\n2026-12-03\tNVIDIA H200\t90 min\n"
                                            f"2026-12-04\t{here}\t183 min\nnot a record\n")
    assert script._machines_of(tmp_path) == [here, "NVIDIA H200"]
    # the card's unvoiced-F0 line: since the first of the last unbroken runs that held it
    assert script._hold_since(tmp_path) is None
    with (tmp_path / script.MACHINES).open("a") as f:
        f.write(f"2026-12-04\t{here}\t300 min\tfrom step 15623, unvoiced_f0_hold 0.5\n"
                f"2026-12-04\t{here}\t330 min\tfrom step 19000, unvoiced_f0_hold 0.5\n")
    assert script._hold_since(tmp_path) == (0.5, 15623)
    with (tmp_path / script.MACHINES).open("a") as f:
        f.write(f"2026-12-05\t{here}\t360 min\tfrom step 21000, unvoiced_f0_hold 0\n")
    assert script._hold_since(tmp_path) is None
    assert script._config_hold() == 0.5  # the tiny config's


def test_base_fit_stage_passes_extra_fit_arguments(tmp_path, monkeypatch):
    """`train_base.py --fit-arg ARG`: each reaches `svc-pl fit` after the script's own, so it can override them."""
    import svc_pl.cli

    script = _train_base_script()
    seen = []
    monkeypatch.setattr(svc_pl.cli, "main", lambda args: seen.append(list(args)) or 0)
    script.stage_fit(tmp_path, 5, 100, None, ["--model.speaker_adversary=0.5", "--seed_everything=3"])
    (args,) = seen
    assert args[-2:] == ["--model.speaker_adversary=0.5", "--seed_everything=3"]
    assert args.index("--model.speaker_lr_scale") < len(args) - 2
    # recorded for the card, with the step they start at; the hold reader still reads the line
    assert script._fit_args_of(tmp_path) == [(0, "--model.speaker_adversary=0.5 --seed_everything=3")]
    assert script._hold_since(tmp_path) == (0.5, 0)
    script.stage_fit(tmp_path, 5, 100, None, [])
    assert len(script._fit_args_of(tmp_path)) == 1


def test_base_card_rewrite_keeps_the_sections_written_by_hand(tmp_path):
    """`--stage export/evaluate` rewrite the card: sections the writer does not make (a conversion table, the
    history of the run) stay, in order, once each; the writer's own sections are replaced."""
    script = _train_base_script()
    made = ["# tiny-base", "", "## Model", "", "- new model line", "", "## Evaluation", "", "- 3.1 cents"]
    old = ("# tiny-base\n\n## Model\n\n- old model line\n\n## History\n\nwarm-started from the 2026-12-04 base\n\n"
           "## Evaluation\n\n- 3.8 cents\n\n## Conversion, against the previous base\n\n| a | b |\n| --- | --- |\n")
    kept = script._hand_kept_sections(old, made)
    assert [k.splitlines()[0] for k in kept] == ["## History", "## Conversion, against the previous base"]
    assert "warm-started from" in kept[0] and "| a | b |" in kept[1]
    assert not any("old model line" in k or "3.8 cents" in k for k in kept)
    card = "\n".join(made) + "\n" + "".join("\n" + k for k in kept)
    assert script._hand_kept_sections(card, made) == kept  # a second rewrite keeps the same, not twice
    assert script._hand_kept_sections("", made) == []
    # the card's training time: the run's Timer (cumulative, right for a run stopped by hand), else --minutes
    ckpt = {"callbacks": {"Timer": {"time_elapsed": {"train": 14329.5, "validate": 1.0}}}}
    assert script._trained_minutes(ckpt, 90.0) == 238.8
    assert script._trained_minutes({"callbacks": {}}, 90.0) == 90.0


def _print_config(*configs: str) -> dict:
    args = [a for c in configs for a in ("--config", c)]
    proc = subprocess.run([sys.executable, "-m", "svc_pl.cli", "fit", *args, "--print_config"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return yaml.safe_load(proc.stdout)


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.slow  # two LightningCLI parses
def test_44k_tiny_is_44k_plus_its_override():
    base, tiny = _flat(_print_config("44k")), _flat(_print_config("44k-tiny"))
    override = _flat(yaml.safe_load((CONFIGS / "44k-tiny.yaml").read_text()))
    assert len((CONFIGS / "44k-tiny.yaml").read_text().splitlines()) < 20  # an override, not a copy
    assert {k: v for k, v in tiny.items() if base.get(k) != v} == override
    assert set(tiny) == set(base)


@pytest.fixture(scope="module")
def data_44k(tmp_path_factory):
    from tests.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("ds44k"), sr=44100, hop=512, n_fft=2048, clips_per_voice=2)


@pytest.mark.slow  # builds a 44.1 kHz dataset and runs the CLI
def test_44k_dataset_with_a_16k_config_says_what_to_run(tmp_path, data_44k, capsys):
    """The failure a new user met: data preprocessed with the defaults (44.1 kHz, hop 512) and a hop-320 config."""
    from svc_pl.cli import main as cli_main

    rc = cli_main(["fit", "--config", "tiny-nsf", "--data.dataset_dir", str(data_44k),
                   "--trainer.default_root_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and "segment_size" not in err
    (line,) = [ln for ln in err.splitlines() if ": error: " in ln]
    assert "320 samples per frame" in line and "hop_length is 512 (44100 Hz)" in line
    assert "tiny-nsf is made for data from: svc-pl preprocess IN OUT --sampling-rate 16000 --hop-length 320" in err
    assert "--config 44k" in err and "--config 44k-tiny" in err
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_base_warm_start_gives_a_harmonic_distribution_base_an_envelope_head(tmp_path):
    """`train_base.py --init-from` a base with per-harmonic outputs, for a tiny config that reads the harmonics
    from an envelope: the output layer gets a flat envelope head (zero rows) and keeps its loudness and noise rows;
    the result loads into the tiny config's decoder, and its harmonics are all alike until trained."""
    import torch

    from svc_pl.layers.ddsp import DDSPDecoder

    script = _train_base_script()
    bins = int(script._run_net([]).get("ddsp_envelope_bins", 0))
    net = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())["model"]["net"]
    assert bins == net["ddsp_envelope_bins"] > 1
    torch.manual_seed(0)
    old = DDSPDecoder(8, 16000, 320, hidden=16, n_harmonics=6, n_noise_bands=5)
    state = {f"dec.{k}": v for k, v in old.state_dict().items()}
    new = script._with_envelope_head(state, {"n_harmonics": 6}, bins)
    dec = DDSPDecoder(8, 16000, 320, hidden=16, n_harmonics=6, n_noise_bands=5, envelope_bins=bins)
    dec.load_state_dict({k[4:]: v for k, v in new.items()})
    w, b = dec.out.weight, dec.out.bias
    assert torch.equal(w[0], old.out.weight[0]) and torch.equal(w[1 + bins:], old.out.weight[1 + 6:])
    assert torch.equal(b[1 + bins:], old.out.bias[1 + 6:]) and not w[1:1 + bins].any()
    with torch.no_grad():
        amps, _ = dec.controls(torch.randn(1, 8, 3), torch.full((1, 3), 200.0), torch.ones(1, 3), None)
    assert torch.allclose(amps, amps[:, :1].expand_as(amps))  # flat: every harmonic the same share
    assert all(torch.equal(new[k], v) for k, v in state.items() if not k.startswith("dec.out."))


def test_base_warm_start_adds_the_noise_level_head_a_fit_arg_asks_for():
    """`train_base.py --init-from BASE --fit-arg=--model.net.ddsp_noise_steps=4`: the run's net is the tiny config's
    with the fit arg over it; the base's weights get a zero level head (level 1: the frame gains, interpolated),
    load into that decoder, and every other weight is kept; going back to one step drops the head."""
    import torch

    from svc_pl.layers.ddsp import DDSPDecoder

    script = _train_base_script()
    tiny = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())["model"]["net"]
    assert script._run_net([]) == tiny
    net = script._run_net(["--model.c_content=1", "--model.net.ddsp_noise_steps=4"])
    assert net == dict(tiny, ddsp_noise_steps=4)
    torch.manual_seed(0)
    old = DDSPDecoder(8, 16000, 320, hidden=16, n_harmonics=6, n_noise_bands=5)
    state = {f"dec.{k}": v for k, v in old.state_dict().items()}
    new = script._with_noise_steps(state, net["ddsp_noise_steps"])
    dec = DDSPDecoder(8, 16000, 320, hidden=16, n_harmonics=6, n_noise_bands=5, noise_steps=4)
    dec.load_state_dict({k[4:]: v for k, v in new.items()})  # strict: nothing missing, nothing left over
    assert not dec.noise_env.weight.any() and not dec.noise_env.bias.any()
    assert all(torch.equal(new[k], v) for k, v in state.items())
    assert script._with_noise_steps(new, 1).keys() == state.keys()


def test_base_warm_start_takes_the_corpus_hop_for_a_ddsp_base(tmp_path):
    """`train_base.py --init-from` the shipped (hop 320) base on a hop-160 corpus: the warm start is labelled with the
    corpus's hop, so the run's `--model.init_from` loads it into a hop-160 DDSP synthesizer (whose output is then
    twice as many frames' worth of samples per second); a HiFi-GAN base, whose upsampling is its hop, is refused."""
    import json

    from svc_pl.pretrained import load_base, pretrained_path
    from svc_pl.warmstart import _from_base

    script = _train_base_script()
    _, shipped = load_base(pretrained_path("tiny-base"))
    info = dict(shipped["dataset_info"], hop_length=160)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset.json").write_text(json.dumps(info))
    warm = script.warm_start_file(tmp_path, pretrained_path("tiny-base"))
    state, meta = load_base(warm)
    assert meta["dataset_info"]["hop_length"] == 160
    net = Synthesizer.from_config(meta["net"], info)
    _from_base(net, warm, meta["net"], info)
    assert net.dec.upp == 160
    assert torch.equal(net.dec.out.weight, state["dec.out.weight"])
    with pytest.raises(UserFacingError, match="hop 160"):  # the unlabelled base still refuses a hop-160 dataset
        _from_base(Synthesizer.from_config(meta["net"], info), pretrained_path("tiny-base"), meta["net"], info)
    hifigan = {"net": {"decoder": "nsf-hifigan"}, "dataset_info": {"hop_length": 512}}
    assert script._warm_start_hop(hifigan, {"hop_length": 512}) == 512
    with pytest.raises(SystemExit, match="--hop-length 512"):
        script._warm_start_hop(hifigan, {"hop_length": 256})


def test_base_warm_start_carries_the_input_layer_over_to_other_units(tmp_path):
    """`train_base.py --init-from` the shipped (Whisper tiny.en, 384-d) base on a corpus of 512-d units (Whisper
    base, `--content-encoder whisper-base`) with `--unit-map-from` the same clips' 384-d units: the warm start's
    input layer applied to the new units gives what the shipped one gives on the old units (here an exact affine
    function of the new ones), so the run starts from the previous base's behaviour; without the paired data it
    stops and says what to give."""
    import json

    from svc_pl.pretrained import load_base, pretrained_path
    from svc_pl.warmstart import _from_base

    script = _train_base_script()
    shipped_state, shipped = load_base(pretrained_path("tiny-base"))
    info = dict(shipped["dataset_info"], unit_dim=512)
    new, old = tmp_path / "data", tmp_path / "old_data"
    gen = torch.Generator().manual_seed(0)
    a, a0 = torch.randn(384, 512, generator=gen) / 512 ** 0.5, torch.randn(384, generator=gen)
    for i in range(30):
        x = torch.randn(512, 40, generator=gen)
        for root, units in ((new, x), (old, a @ x + a0[:, None])):
            (root / "v").mkdir(parents=True, exist_ok=True)
            torch.save({"units": units, "f0": torch.zeros(40)}, root / "v" / f"clip_{i}.pt")
    (new / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(SystemExit, match="--unit-map-from"):
        script.warm_start_file(tmp_path, pretrained_path("tiny-base"))
    warm = script.warm_start_file(tmp_path, pretrained_path("tiny-base"), unit_map_from=old)
    state, meta = load_base(warm)
    assert meta["dataset_info"]["unit_dim"] == 512 and state["pre.weight"].shape == (128, 512, 5)
    net = Synthesizer.from_config(meta["net"], info)
    _from_base(net, warm, meta["net"], info)
    x = torch.randn(1, 512, 60, generator=gen)
    with torch.no_grad():
        got = net.pre(x)[..., 2:-2]  # the kernel's reach at the edges sees zero padding, mapped or not
        want = torch.nn.functional.conv1d(a @ x + a0[:, None], shipped_state["pre.weight"].float(),
                                          shipped_state["pre.bias"].float(), padding=2)[..., 2:-2]
    assert torch.allclose(got, want, atol=0.02 * want.abs().mean().item()), (got - want).abs().max()
    assert all(torch.equal(state[k], v) for k, v in shipped_state.items() if not k.startswith("pre."))
    # the data stage's preprocessing and the evaluate stage's conversion follow the units' encoder
    args = script.preprocess_args("whisper-base")
    assert args[args.index("--content-encoder") + 1] == "whisper-base" and "50,4,2" in args
    assert script.content_encoder_of(512) == "whisper-base" and script.content_encoder_of(384) == "whisper-tiny.en"
    with pytest.raises(SystemExit, match="768-d"):
        script.content_encoder_of(768)


def test_each_unpredictable_sentence_of_the_base_is_sung_by_a_voice_that_does_not_speak_it():
    from svc_pl.corpus import BASE_VOICES, SUS_SENTENCE_IDS

    n = len(BASE_VOICES)
    per_voice = [_train_base_script().sus_sentences_of(i, n) for i in range(n)]
    for j in SUS_SENTENCE_IDS[:n]:
        speakers = {i for i in range(n) if j in per_voice[i][0]}
        singers = {i for i in range(n) if j in per_voice[i][1]}
        assert len(speakers) == 2 and len(singers) == 1 and not speakers & singers, j
