"""The svc-pl command as a user meets it: infer's flags (one per conversion option, grouped), a quiet and
honest terminal during fit, one checkpoint policy, and no process-wide side effects from library code."""

import argparse
import dataclasses
import inspect
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from svc_pl.cli import build_parser
from svc_pl.cli import infer as infer_cli
from svc_pl.cli import main as cli_main
from svc_pl.infer.converter import OPTION_GROUPS, ConvertOptions

REPO = Path(__file__).resolve().parents[1]

# Every flag `svc-pl infer` had when its options were written out by hand: scripts call these.
INFER_FLAGS = {
    "-h", "--help", "-o", "--output", "--output-dir", "-m", "--model", "-c", "--config", "-s", "--speaker", "-t",
    "--transpose", "--content-encoder", "--encoder", "--random-encoder", "--f0", "--f0-model", "--f0-threshold",
    "--auto-predict-f0", "-n", "--noise-scale", "--cluster-model", "--cluster-ratio", "--feature-index",
    "--retrieval-ratio", "--loudness-mix", "--speaker-mix", "--speaker-keyframes", "--slice-db", "--max-silence-kept",
    "--min-chunk-seconds", "--pad-seconds", "--clip-seconds", "--crossfade-seconds", "--seed", "--precision",
    "--decode-window", "--length-bucket-seconds", "--batch-size", "--max-chunk-seconds", "--enhancer",
    "--enhancer-adaptive-key", "--format", "--device", "--devices", "--accelerator", "--no-progress",
}


def _infer_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="svc-pl infer")
    infer_cli.add_arguments(p)
    return p


MINIMAL = ["in.wav", "-o", "out", "-m", "G_1.pth"]


def test_infer_keeps_every_flag():
    flags = {s for a in _infer_parser()._actions for s in a.option_strings}
    assert INFER_FLAGS <= flags, sorted(INFER_FLAGS - flags)


def test_every_convert_option_is_reachable_with_its_default(tmp_path):
    parser = _infer_parser()
    assert infer_cli.options_from_args(parser.parse_args(MINIMAL)) == ConvertOptions()
    by_dest = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(ConvertOptions):
        if f.name in ("speaker", "speaker_keyframes"):
            continue
        action = by_dest.get(f.name)
        assert action is not None, f"ConvertOptions.{f.name} has no svc-pl infer flag"
        assert action.default == f.default, (f.name, action.default, f.default)
        if action.nargs == 0:
            argv, value = [action.option_strings[-1]], not f.default
        elif action.choices:
            value = next(c for c in action.choices if c != f.default)
            argv = [action.option_strings[-1], str(value)]
        else:
            value = action.type("3")
            argv = [action.option_strings[-1], "3"]
        opts = infer_cli.options_from_args(parser.parse_args(MINIMAL + argv))
        changed = {g.name for g in dataclasses.fields(ConvertOptions)
                   if getattr(opts, g.name) != getattr(ConvertOptions(), g.name)}
        assert changed == {f.name} and getattr(opts, f.name) == value, (f.name, argv, changed)
    keyframes = tmp_path / "mix.json"
    keyframes.write_text(json.dumps([[0, {"alto": 1}], [2.5, {"alto": 0.5, "tenor": 0.5}]]))
    argv = MINIMAL + ["-s", "tenor", "--speaker-keyframes", str(keyframes)]
    opts = infer_cli.options_from_args(parser.parse_args(argv))
    assert opts.speaker == "tenor"
    assert opts.speaker_keyframes == [(0.0, {"alto": 1}), (2.5, {"alto": 0.5, "tenor": 0.5})]
    opts = infer_cli.options_from_args(parser.parse_args(MINIMAL + ["--speaker-mix", "alto:0.7,tenor:0.3"]))
    assert opts.speaker == {"alto": 0.7, "tenor": 0.3}


def test_infer_help_is_grouped():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["infer"].format_help()
    positions = [text.index(f"\n{group}:\n") for group in OPTION_GROUPS]
    assert positions == sorted(positions), "groups out of order"
    sections = dict(zip(OPTION_GROUPS, [text[a:b] for a, b in zip(positions, positions[1:] + [len(text)])]))
    assert "--transpose" in sections["pitch"] and "--f0 " in sections["pitch"]
    assert "--speaker-mix" in sections["speaker"] and "--noise-scale" in sections["quality"]
    assert "--precision" in sections["speed"] and "--output" in sections["input/output"]
    assert "(default: 0.4)" in sections["quality"]  # defaults shown, from ConvertOptions


def test_one_list_of_f0_methods_encoders_and_formats():
    from svc_pl.data.audio import FORMATS
    from svc_pl.data.content import ENCODERS
    from svc_pl.data.pitch import METHODS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("preprocess", "infer", "evaluate"):
        actions = {s: a for a in sub.choices[command]._actions for s in a.option_strings}
        assert tuple(actions["--f0"].choices) == METHODS, command
        if "--encoder" in actions:
            assert sorted(actions["--encoder"].choices) == sorted(ENCODERS), command
    infer = {s: a for a in sub.choices["infer"]._actions for s in a.option_strings}
    assert sorted(f".{c}" for c in infer["--format"].choices) == sorted(FORMATS)


# ------------------------------------------------------------------------------------------------ fit, quietly

NOISE = (
    "litlogger",  # Lightning's advertisement
    "LightningCLI's args parameter",
    "LeafSpec",
    "pkg_resources",
    "saved_models",  # ModelCheckpoint's dozen lines of example code under manual optimization
    "Traceback",
    "GPU available",
    "smaller than the logging interval",  # svc_pl logs per step, across epochs
    "┏",  # Lightning's model summary table
)


@pytest.mark.slow
def test_fit_prints_stages_not_noise(tmp_path):
    from tests.datasets import make_dataset

    ds = make_dataset(tmp_path / "ds", clips_per_voice=2)
    every2 = tmp_path / "every2.yaml"  # a checkpoint every 2 steps: the manual-optimization warning's trigger
    every2.write_text("trainer:\n  callbacks:\n    - class_path: pytorch_lightning.callbacks.ModelCheckpoint\n"
                      "      init_args: {filename: '{step}', save_last: true, save_top_k: 1, monitor: step, "
                      "mode: max, every_n_train_steps: 2}\n")
    run = subprocess.run([sys.executable, "-m", "svc_pl.cli", "fit", "--config", "tiny-nsf", "--config", str(every2),
                          "--data.dataset_dir", str(ds), "--trainer.default_root_dir", str(tmp_path / "run"),
                          "--trainer.max_steps", "4"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONWARNINGS": "default"})
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    for noise in NOISE:
        assert noise not in out, f"{noise!r} in the output of svc-pl fit:\n{out[-3000:]}"
    assert "training SVCModule:" in out and "parameters" in out  # one line for the model
    assert "stopped at step 4" in out and "last.ckpt" in out  # and one for the end
    assert [p.name for p in (tmp_path / "run").rglob("last*.ckpt")] == ["last.ckpt"]


def test_one_checkpoint_policy_and_no_learning_rate_monitor(tmp_path, monkeypatch):
    """A config without callbacks gets exactly one ModelCheckpoint, and the learning rate is logged once (by
    the module as ``learning_rate``), not again by a LearningRateMonitor."""
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

    from svc_pl.lightning import cli as lcli
    from tests.datasets import make_dataset

    ds = make_dataset(tmp_path / "ds", voices=("en",), clips_per_voice=2)
    config = tmp_path / "bare.yaml"
    cfg = yaml.safe_load((REPO / "svc_pl" / "configs" / "tiny-nsf.yaml").read_text())
    cfg["trainer"].pop("callbacks", None)
    config.write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr(lcli.SVCLightningCLI, "_run_subcommand", lambda self, sub: None)
    cli = lcli.SVCLightningCLI(lcli.SVCModule, lcli.SVCDataModule, trainer_defaults=lcli.trainer_defaults(),
                               args=["fit", "--config", str(config), "--data.dataset_dir", str(ds),
                                     "--trainer.default_root_dir", str(tmp_path / "run")],
                               seed_everything_default=1234)
    callbacks = cli.trainer.callbacks
    assert sum(isinstance(c, ModelCheckpoint) for c in callbacks) == 1
    assert not any(isinstance(c, LearningRateMonitor) for c in callbacks)


def test_cli_trainer_gets_the_step_progress_bar_unless_disabled(tmp_path, monkeypatch):
    from pytorch_lightning.callbacks import ProgressBar

    from svc_pl.lightning import cli as lcli
    from svc_pl.lightning.progress import StepProgressBar
    from tests.datasets import make_dataset

    ds = make_dataset(tmp_path / "ds", voices=("en",), clips_per_voice=2)
    monkeypatch.setattr(lcli.SVCLightningCLI, "_run_subcommand", lambda self, sub: None)
    for flag, expected in (("true", [StepProgressBar]), ("false", [])):
        cli = lcli.SVCLightningCLI(lcli.SVCModule, lcli.SVCDataModule, trainer_defaults=lcli.trainer_defaults(),
                                   args=["fit", "--config", str(REPO / "svc_pl" / "configs" / "tiny-nsf.yaml"),
                                         "--data.dataset_dir", str(ds),
                                         "--trainer.default_root_dir", str(tmp_path / "run"),
                                         "--trainer.enable_progress_bar", flag],
                                   seed_everything_default=1234)
        assert [type(c) for c in cli.trainer.callbacks if isinstance(c, ProgressBar)] == expected, flag


def test_step_bounded_progress_bar_shows_no_bogus_epoch_total():
    """Under ``max_epochs=-1`` (our configs bound steps) the bar says "Epoch 2" and "step: 5/5", not
    Lightning's "Epoch 2/-2"; the rendered terminal text is checked."""
    import io

    import pytorch_lightning as pl
    import rich
    from torch.utils.data import DataLoader, TensorDataset

    from svc_pl.lightning.progress import StepProgressBar

    class Toy(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.lin(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    screen = io.StringIO()
    bar = StepProgressBar(console_kwargs={"file": screen, "force_terminal": True, "width": 120, "color_system": None})
    trainer = pl.Trainer(max_epochs=-1, max_steps=5, callbacks=[bar], logger=False, enable_checkpointing=False,
                         enable_model_summary=False, accelerator="cpu")
    try:
        trainer.fit(Toy(), DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2))  # 2 batches an epoch: 3 epochs
    finally:
        rich.reconfigure()  # the bar pointed rich's global console at `screen`
    out = screen.getvalue()
    assert "Epoch 2" in out and "step: 5/5" in out, out
    assert "/-" not in out, out  # no negative total in any frame


def test_lightning_still_reads_ckpt_hparams_only_after_parse_arguments():
    """SVCLightningCLI.parse_arguments (public) holds ``ckpt_path`` back so that LightningCLI's private
    ``_parse_ckpt_path``, which runs right after it, does not rebuild the model from a checkpoint's
    hyper-parameters. If Lightning renames, re-signs or moves that step, this fails: check the new order."""
    from pytorch_lightning.cli import LightningCLI

    assert list(inspect.signature(LightningCLI._parse_ckpt_path).parameters) == ["self"]
    init = inspect.getsource(LightningCLI.__init__)
    assert init.index("self.parse_arguments(") < init.index("self._parse_ckpt_path()")


def test_fit_with_ckpt_path_builds_the_model_from_the_config(tmp_path, monkeypatch):
    from svc_pl.lightning import cli as lcli
    from tests.datasets import make_dataset

    ds = make_dataset(tmp_path / "ds", voices=("en",), clips_per_voice=2)
    config = REPO / "svc_pl" / "configs" / "tiny-nsf.yaml"
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"learning_rate": 0.123, "c_mel": 1.0}}, ckpt)
    monkeypatch.setattr(lcli.SVCLightningCLI, "_run_subcommand", lambda self, sub: None)
    cli = lcli.SVCLightningCLI(lcli.SVCModule, lcli.SVCDataModule, trainer_defaults=lcli.trainer_defaults(),
                               args=["fit", "--config", str(config), "--data.dataset_dir", str(ds),
                                     "--trainer.default_root_dir", str(tmp_path / "run"), "--ckpt_path", str(ckpt)],
                               seed_everything_default=1234)
    assert cli.model.hparams.learning_rate == yaml.safe_load(config.read_text())["model"]["learning_rate"] != 0.123
    assert cli.config["fit"]["ckpt_path"] == str(ckpt)


# ------------------------------------------------------------------------------------------------ warnings


def test_missing_optional_package_is_one_line(monkeypatch, capsys):
    from svc_pl.cli import export_onnx

    def missing(args):
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx")

    monkeypatch.setattr(export_onnx, "run", missing)
    assert cli_main(["export-onnx", "-m", "model.ckpt", "-o", "m.onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "onnx" in err and "pip install 'svc_pl[onnx]'" in err, err


def test_missing_system_tool_is_one_line(tmp_path, monkeypatch, capsys):
    import svc_pl.corpus

    monkeypatch.setattr(svc_pl.corpus.shutil, "which", lambda tool: None)  # no espeak-ng on this machine
    monkeypatch.setattr("svc_pl.evaluate.require_speaker_extra", lambda: None)
    assert cli_main(["demo", str(tmp_path / "demo"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "espeak-ng is not installed" in err and "apt-get install espeak-ng" in err, err


def test_dependency_warnings_print_on_one_line(capsys):
    import warnings

    from svc_pl.cli import quiet_known_noise

    with warnings.catch_warnings():
        quiet_known_noise()
        warnings.warn("something real\n  with a second line", UserWarning, stacklevel=1)
        warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning,
                               "_pytree.py", 21, module="pytorch_lightning.utilities._pytree")
    err = capsys.readouterr().err
    assert err == "warning: something real with a second line\n", err


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    from tests.test_infer import write_tiny_voice

    d = write_tiny_voice(tmp_path_factory.mktemp("voice"))
    t = np.arange(8000) / 16000
    sf.write(d / "in.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return d


def test_forced_bf16_on_a_cpu_without_it_warns_once(voice, tmp_path, monkeypatch, caplog, capsys):
    from svc_pl.infer import runtime

    args = [str(voice / "in.wav"), "-o", str(tmp_path / "out"), "-m", str(voice / "G_1.pth"), "--random-encoder",
            "--encoder", "vec768l12", "--no-progress", "--decode-window", "0"]
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.resolve_precision("auto", "cpu") == "fp32"
    with caplog.at_level(logging.WARNING, logger="svc_pl"):
        assert cli_main(["infer", *args, "--precision", "bf16"]) == 0
    slow = [r for r in caplog.records if "many times slower" in r.getMessage()]
    assert len(slow) == 1 and "--precision auto or fp32" in slow[0].getMessage()
    lines = capsys.readouterr().err.splitlines()  # one line per stage: what runs where, what came out
    assert any("16000 Hz, 3 speaker(s); converting 1 file(s) on cpu" in x for x in lines), lines
    assert lines[-1] == f"converted 1 of 1 file(s) into {tmp_path / 'out'}", lines
    caplog.clear()
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level(logging.WARNING, logger="svc_pl"):
        assert cli_main(["infer", *args, "--precision", "bf16"]) == 0
    assert not [r for r in caplog.records if "many times slower" in r.getMessage()]


# ------------------------------------------------------------------------------------------------ side effects


def test_converter_leaves_the_environment_alone_and_the_command_bounds_the_cache(voice, tmp_path, monkeypatch):
    from svc_pl.data.content import random_content_encoder
    from svc_pl.infer.converter import Converter
    from svc_pl.infer.loading import load_voice_model

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    before = dict(os.environ)
    Converter(load_voice_model(voice / "G_1.pth"), random_content_encoder("vec768l12"))
    assert dict(os.environ) == before
    assert cli_main(["config"]) == 0
    assert os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY") == "256"


def test_figures_do_not_switch_the_matplotlib_backend(tmp_path):
    import matplotlib

    from svc_pl.evaluate import evaluate_f0, plot_f0
    from svc_pl.lightning.media import _figure_f0, _figure_mels

    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # anything but Agg: the figures must not change it
    try:
        _figure_mels(np.random.rand(80, 50), np.random.rand(80, 50))
        _figure_f0(np.full(50, 200.0))
        t = np.arange(16000) / 16000
        y = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        plot_f0(evaluate_f0(y, y, 16000, 16000, method="pm"), str(tmp_path / "f0.png"))
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "f0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        matplotlib.use(backend)


def test_validation_media_keeps_no_state_on_the_writer(tmp_path):
    from pytorch_lightning.loggers import TensorBoardLogger

    from svc_pl.lightning.media import log_validation_media

    logger = TensorBoardLogger(tmp_path)
    writer = logger.experiment
    before = set(vars(writer))
    calls = []
    writer.add_audio = lambda tag, *a, **k: calls.append(tag)
    for step in (10, 20):
        log_validation_media(logger, step, 0, torch.zeros(320), torch.zeros(320), torch.rand(80, 4),
                             torch.rand(80, 4), torch.full((4,), 200.0), 16000)
    assert set(vars(writer)) - before == {"add_audio"}  # only what this test put there
    assert calls == ["val/audio/0", "val/audio_gt/0", "val/audio/0"]  # ground truth once per writer
    logger.finalize("success")


# ------------------------------------------------------------------------------------------- model.class_path

def test_the_module_trained_is_the_one_model_class_path_names(tmp_path, monkeypatch):
    """``model.class_path`` (LightningCLI's own form, settings under ``init_args``) chooses the LightningModule; a
    config without one trains the synthesizer; an older diffusion config without one (``model.diffusion``) still
    trains the diffusion model. Settings given as plain ``--model.KEY`` options reach the chosen class."""
    from svc_pl.lightning import cli as lcli
    from svc_pl.lightning.diffusion_module import DiffusionModule
    from svc_pl.lightning.module import SVCModule
    from tests.datasets import make_dataset

    ds = make_dataset(tmp_path / "ds", voices=("en",), clips_per_voice=2)
    built = []
    monkeypatch.setattr(lcli.SVCLightningCLI, "_run_subcommand", lambda self, sub: built.append(self.model))
    shipped = REPO / "svc_pl" / "configs"
    tiny = yaml.safe_load((shipped / "tiny-nsf.yaml").read_text())
    named = tmp_path / "named.yaml"  # the synthesizer named explicitly
    named.write_text(yaml.safe_dump({**tiny, "model": {"class_path": "svc_pl.lightning.module.SVCModule",
                                                       "init_args": tiny["model"]}}))
    old = tmp_path / "old-diffusion.yaml"  # written before class_path: model.diffusion and no class named
    old.write_text(yaml.safe_dump({"trainer": {"accelerator": "cpu"},
                                   "model": {"diffusion": {"n_layers": 2, "n_chans": 8, "n_hidden": 8}, "n_mels": 20}}))
    small = ["--model.diffusion.n_chans", "8", "--model.diffusion.n_hidden", "8", "--model.n_mels", "20"]
    cases = [(["--config", str(shipped / "diffusion.yaml"), "--model.diffusion.n_layers", "3", *small],
              DiffusionModule, 3),
             (["--config", str(old)], DiffusionModule, 2),
             (["--config", str(shipped / "tiny-nsf.yaml")], SVCModule, None),
             (["--config", str(named), "--model.learning_rate", "0.0042"], SVCModule, None)]
    for args, expected, layers in cases:
        lcli.main(["fit", *args, "--data.dataset_dir", str(ds), "--trainer.default_root_dir", str(tmp_path / "run")])
        model = built.pop()
        assert type(model) is expected, args
        if layers is not None:
            assert len(model.model.decoder.denoise_fn.residual_layers) == layers, args
    assert model.hparams.learning_rate == 0.0042 and model.hparams.dataset_info["speakers"] == {"spk0": 0}


def test_export_runs_without_lightning(tmp_path):
    """``svc-pl export`` of a synthesizer run and of a diffusion run, in a process where importing Lightning
    fails: the networks are rebuilt by their own builders (svc_pl.compat.export)."""
    from svc_pl.compat.export import TRAINING_DEFAULTS
    from svc_pl.diffusion import DiffusionConfig
    from svc_pl.lightning.diffusion_module import DiffusionModule
    from svc_pl.lightning.module import SVCModule

    cfg = yaml.safe_load((REPO / "svc_pl" / "configs" / "tiny-nsf.yaml").read_text())["model"]
    info = {"speakers": {"a": 0, "b": 1}, "unit_dim": 32, "sampling_rate": 16000, "hop_length": 320,
            "filter_length": 1024, "win_length": 1024, "content_encoder": "vec768l12"}
    synth = SVCModule(dataset_info=info, **cfg)
    diff = DiffusionModule(diffusion=DiffusionConfig(n_layers=2, n_chans=8, n_hidden=8), dataset_info=info, n_mels=20)
    for name, module in (("synth", synth), ("diff", diff)):
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 8,
                    "epoch": 3}, tmp_path / f"{name}.ckpt")
    # config.json records the training settings a checkpoint may lack with SVCModule's own defaults
    defaults = {k: p.default for k, p in inspect.signature(SVCModule.__init__).parameters.items()}
    assert {k: defaults[k] for k in TRAINING_DEFAULTS} == TRAINING_DEFAULTS
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nclass _No:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pytorch_lightning', 'lightning'):\n"
        "            raise ImportError('Lightning is not importable here')\n"
        "sys.meta_path.insert(0, _No())\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(REPO)]))
    for name, files in (("synth", {"G_4.pth", "D_4.pth", "config.json"}), ("diff", {"model_8.pt", "diffusion.yaml"})):
        out = tmp_path / f"out-{name}"
        run = subprocess.run([sys.executable, "-c", "import sys; from svc_pl.cli import main; "
                              f"code = main(['export', {str(tmp_path / f'{name}.ckpt')!r}, '-o', {str(out)!r}]); "
                              "assert 'pytorch_lightning' not in sys.modules; sys.exit(code)"],
                             capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        assert {p.name for p in out.iterdir()} == files, name
    check = subprocess.run([sys.executable, "-c", "import pytorch_lightning"], capture_output=True, text=True, env=env)
    assert check.returncode != 0 and "Lightning is not importable here" in check.stderr  # the blocker blocks
    from svc_pl.compat import load_sovits

    net = load_sovits(tmp_path / "out-synth" / "G_4.pth", tmp_path / "out-synth" / "config.json")
    assert all(torch.equal(v, synth.net.state_dict()[k]) for k, v in net.state_dict().items())
