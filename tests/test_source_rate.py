"""The rate of the NSF sine source across so-vits-svc's format (issue 24).

so-vits-svc's ``SynthesizerTrn`` computes the source at ``model.sampling_rate`` of ``config.json``, 44100 Hz when
that is absent, never at ``data.sampling_rate``. So a 16 kHz model upstream trained without the key learned a
44.1 kHz source, and a file svc_pl writes must state the rate its audio was made with. Fixtures:
``tests/data/sovits_variants/sr16k*`` (upstream's own outputs). Set ``SOVITS_REF`` to a so-vits-svc 4.1 checkout to
also run upstream's model on svc_pl's export.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from svc_pl.cli import main as cli_main
from svc_pl.compat import load_sovits, read_sovits_config
from svc_pl.infer.loading import load_voice_model
from svc_pl.lightning.module import SVCModule
from tests.datasets import make_dataset

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "sovits_variants"
SEED = 52468


def _settings(name: str = "sr16k"):
    """The fixture's architecture (without the source rate, as a user's run config has it) and dataset settings."""
    cfg = read_sovits_config(DATA / name / "config.json")
    net = {k: v for k, v in cfg.net_config().to_dict().items() if k != "source_sampling_rate"}
    info = cfg.data_settings() | {"win_length": int(cfg.data["win_length"]), "speakers": dict(cfg.spk)}
    return net, info


def _infer(model, inputs):
    audio, _ = model.infer(inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"], noise_scale=0.4, seed=SEED)
    return audio


def _inputs(name: str = "sr16k"):
    return torch.load(DATA / name / "inputs.pt", weights_only=True)


def _model_rate(config: Path) -> int:
    return json.loads(config.read_text())["model"]["sampling_rate"]


def test_native_16k_export_states_the_data_rate_and_renders_the_same(tmp_path):
    net, info = _settings()
    module = SVCModule(net=net, dataset_info=info, discriminator_width=0.25)
    assert module.hparams.net["source_sampling_rate"] is None  # svc_pl's own: the source at the data's rate
    assert module.net.dec.m_source.l_sin_gen.sampling_rate == 16000
    paths = module.export_sovits(tmp_path)
    assert _model_rate(paths["config"]) == 16000
    back = load_sovits(paths["G"], paths["config"])
    assert back.dec.m_source.l_sin_gen.sampling_rate == 16000
    assert torch.equal(_infer(back, _inputs()), _infer(module.net.eval(), _inputs()))


@pytest.mark.parametrize("name, trained_rate", [("sr16k", 44100), ("sr16k_model_rate", 16000)])
def test_fine_tuning_an_upstream_16k_model_keeps_its_source_and_its_export_means_the_same(tmp_path, caplog, name,
                                                                                          trained_rate):
    net, info = _settings(name)
    with caplog.at_level(logging.INFO, logger="svc_pl"):
        module = SVCModule(net=net, dataset_info=info, discriminator_width=0.25,
                           init_from=str(DATA / name / "G_0.pth"))
    assert module.net.dec.m_source.l_sin_gen.sampling_rate == trained_rate
    assert module.hparams.net["source_sampling_rate"] == (None if trained_rate == 16000 else trained_rate)
    said = [r.getMessage() for r in caplog.records if "NSF source" in r.getMessage()]
    assert len(said) == (trained_rate != 16000), said
    paths = module.export_sovits(tmp_path)
    assert _model_rate(paths["config"]) == trained_rate
    # the export, read back, renders upstream's audio of the original file (the weights are untouched at step 0)
    expected = torch.load(DATA / name / "expected.pt", weights_only=True)["audio_noise0.4"]
    audio = _infer(load_sovits(paths["G"], paths["config"]), _inputs(name))
    assert (audio - expected).abs().max().item() <= 1e-4


def test_a_g_file_without_its_config_is_taken_as_upstream_trained_it(tmp_path, caplog):
    shutil.copy(DATA / "sr16k" / "G_0.pth", tmp_path / "G_0.pth")  # no config.json beside it
    net, info = _settings()
    with caplog.at_level(logging.INFO, logger="svc_pl"):
        module = SVCModule(net=net, dataset_info=info, discriminator_width=0.25, init_from=str(tmp_path / "G_0.pth"))
    assert module.hparams.net["source_sampling_rate"] == 44100
    assert any("so-vits-svc's default" in r.getMessage() for r in caplog.records)


def test_a_source_rate_the_config_sets_wins_with_a_warning(caplog):
    net, info = _settings()
    with caplog.at_level(logging.WARNING, logger="svc_pl"):
        module = SVCModule(net=net | {"source_sampling_rate": 16000}, dataset_info=info, discriminator_width=0.25,
                           init_from=str(DATA / "sr16k" / "G_0.pth"))
    assert module.net.dec.m_source.l_sin_gen.sampling_rate == 16000
    assert any("trained with its NSF source at 44100 Hz" in r.getMessage() for r in caplog.records)


@pytest.mark.slow  # a dataset and a 2-step fit through the CLI (about a minute)
def test_fit_from_an_upstream_16k_model_then_export_through_the_cli(tmp_path):
    """The user's commands: svc-pl fit --model.init_from G_0.pth (a 16 kHz model upstream trained with its 44.1 kHz
    source), then svc-pl export of the run: the run's .ckpt and the exported config.json keep the 44.1 kHz source."""
    net, _ = _settings()
    dataset = make_dataset(tmp_path / "ds", unit_dim=24, clips_per_voice=3)
    config = yaml.safe_load((REPO / "svc_pl" / "configs" / "tiny-nsf.yaml").read_text())
    config["model"]["net"] = net
    config["trainer"]["max_steps"] = 2
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert cli_main(["fit", "--config", str(tmp_path / "run.yaml"), "--data.dataset_dir", str(dataset),
                     "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
                     "--trainer.limit_val_batches", "0", "--model.init_from", str(DATA / "sr16k" / "G_0.pth")]) == 0
    (ckpt,) = (tmp_path / "run").rglob("last.ckpt")
    voice = load_voice_model(ckpt)
    assert voice.net.dec.m_source.l_sin_gen.sampling_rate == 44100 and voice.net.sampling_rate == 16000
    assert cli_main(["export", str(ckpt), "-o", str(tmp_path / "export")]) == 0
    exported = tmp_path / "export" / "config.json"
    assert _model_rate(exported) == 44100 and json.loads(exported.read_text())["data"]["sampling_rate"] == 16000
    (g,) = (tmp_path / "export").glob("G_*.pth")
    back = load_sovits(g, exported).prepare_for_inference()  # folded, as load_voice_model folds the .ckpt's
    assert (_infer(back, _inputs()) - _infer(voice.net, _inputs())).abs().max().item() <= 1e-6


UPSTREAM_RUN = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
import make_fixture  # upstream's tree imported as the fixture generator does (faiss/sklearn stubbed)
models, utils = make_fixture.import_upstream(sys.argv[2])
folder = sys.argv[3]
hps = utils.get_hparams_from_file(folder + "/config.json")
net = models.SynthesizerTrn(hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length,
                            **hps.model)  # as upstream's infer_tool builds it
utils.load_checkpoint(folder + "/G_0.pth", net, None)
net.eval()
x = torch.load(sys.argv[4], weights_only=True)
with torch.no_grad():
    audio, _ = net.infer(x["c"], x["f0"], x["uv"], g=x["sid"], noice_scale=0.4, seed=int(sys.argv[5]))
torch.save(audio, folder + "/upstream.pt")
"""


@pytest.mark.skipif(not os.environ.get("SOVITS_REF"), reason="set SOVITS_REF to a so-vits-svc 4.1 checkout")
def test_upstream_renders_svc_pl_16k_export_as_svc_pl_does(tmp_path):
    net, info = _settings()
    module = SVCModule(net=net, dataset_info=info, discriminator_width=0.25)
    module.export_sovits(tmp_path)
    proc = subprocess.run([sys.executable, "-c", UPSTREAM_RUN, str(DATA), os.environ["SOVITS_REF"], str(tmp_path),
                           str(DATA / "sr16k" / "inputs.pt"), str(SEED)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    upstream = torch.load(tmp_path / "upstream.pt", weights_only=True)
    ours = _infer(module.net.eval(), _inputs())
    assert (upstream - ours).abs().max().item() <= 1e-4
