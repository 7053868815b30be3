"""Training with trainer.fit on CPU: overfitting, exact resume, TensorBoard tags, DDP, fine-tuning."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from svc_pl.cli import main as cli_main
from svc_pl.lightning.module import SVCModule
from tests.datasets import make_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "svc_pl" / "configs" / "tiny-nsf.yaml")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), clips_per_voice=3)


def _fit(root, dataset, *extra):
    args = ["fit", "--config", TINY, "--data.dataset_dir", str(dataset), "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", *extra]
    assert cli_main(args) == 0


def _scalars(root, tag):
    events = sorted(Path(root).rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard events under {root}"
    values = []
    for ev in events:
        acc = EventAccumulator(str(ev), size_guidance={"scalars": 0, "images": 0, "audio": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            values += [(e.step, e.value) for e in acc.Scalars(tag)]
    return values, events


def _last_ckpt(root):
    ckpts = sorted(Path(root).rglob("last.ckpt"))
    assert len(ckpts) == 1, ckpts
    return ckpts[0]


@pytest.mark.slow
def test_overfits_one_clip_and_logs_tensorboard_tags(tmp_path):
    # one short clip; 130 batches = 130 so-vits-svc steps (Lightning counts 260 optimizer steps). The mel loss
    # measured over 200 batches: 1.9-2.3 at the start, 1.0 by batch 120, 0.9 at 190; untrained it stays near 2
    ds = make_dataset(tmp_path / "one", voices=("en",), clips_per_voice=2, phrases=["Hello there, my friend."])
    _fit(tmp_path / "run", ds, "--trainer.max_steps", "260", "--trainer.log_every_n_steps", "2",
         "--trainer.check_val_every_n_epoch", "100", "--model.learning_rate", "0.001", "--model.lr_decay", "1.0",
         "--model.net.p_dropout", "0", "--data.batch_size", "4")
    mel, events = _scalars(tmp_path / "run", "loss/g/mel")
    first = sum(v for _, v in mel[:3]) / 3
    last = sum(v for _, v in mel[-3:]) / 3
    assert last <= 0.6 * first, (first, last)
    acc = EventAccumulator(str(events[0]), size_guidance={"scalars": 0, "images": 0, "audio": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("loss/g/total", "loss/d/total", "loss/g/mel", "loss/g/kl", "loss/g/fm", "loss/g/lf0", "learning_rate",
                "grad_norm_g", "grad_norm_d", "val/mel"):
        assert tag in tags["scalars"], tag
    assert any(t.startswith("val/mel/") for t in tags["images"])
    assert any(t.startswith("val/f0/") for t in tags["images"])
    assert any(t.startswith("val/audio/") for t in tags["audio"])


def _record_batches(monkeypatch) -> list[tuple[int, list[str]]]:
    """(global_step, clip names) of every training batch from now on, in this process."""
    seen = []
    step = SVCModule.training_step

    def training_step(self, batch, batch_idx):
        seen.append((self.global_step, list(batch.names)))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(SVCModule, "training_step", training_step)
    return seen


def _assert_same_tensors(a, b, where: str) -> None:
    """Nested dicts/lists of tensors and numbers are equal (tensors to 1e-6)."""
    if isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-6), where
    else:
        assert a == b, (where, a, b)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted(tmp_path, dataset, monkeypatch):
    """A run that checkpoints every 3 batches (6 optimizer steps) of a 4-batch epoch leaves a checkpoint
    mid-epoch, after an odd batch, as a crash would. Resumed from it: the next batches, the weights, the
    optimizer and scheduler states, the step and the epoch equal those of the run that went on (crossing
    into the next epoch)."""
    every = tmp_path / "every6.yaml"
    every.write_text("trainer:\n  callbacks:\n    - class_path: pytorch_lightning.callbacks.ModelCheckpoint\n"
                     "      init_args: {filename: '{epoch}-{step}', save_last: true, save_top_k: -1, "
                     "every_n_train_steps: 6}\n")
    common = ["--config", str(every), "--trainer.limit_val_batches", "0", "--data.batch_size", "1",
              "--trainer.log_every_n_steps", "1"]
    seen = _record_batches(monkeypatch)
    _fit(tmp_path / "full", dataset, "--trainer.max_steps", "12", *common)  # 6 batches: 1.5 epochs
    full_batches = list(seen)
    mid = next((tmp_path / "full").rglob("epoch=0-step=6.ckpt"))
    state = torch.load(mid, weights_only=True)
    assert state["global_step"] == 6 and state["epoch"] == 0
    seen.clear()
    _fit(tmp_path / "resumed", dataset, "--trainer.max_steps", "12", "--ckpt_path", str(mid), *common)
    resumed_batches = list(seen)
    assert len(full_batches) == 6 and resumed_batches == full_batches[3:], (full_batches, resumed_batches)
    full = torch.load(_last_ckpt(tmp_path / "full"), weights_only=True)
    resumed = torch.load(_last_ckpt(tmp_path / "resumed"), weights_only=True)
    assert full["global_step"] == resumed["global_step"] == 12 and full["epoch"] == resumed["epoch"]
    _assert_same_tensors(full["state_dict"], resumed["state_dict"], "state_dict")
    _assert_same_tensors(full["optimizer_states"], resumed["optimizer_states"], "optimizer_states")
    _assert_same_tensors(full["lr_schedulers"], resumed["lr_schedulers"], "lr_schedulers")


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory, dataset):
    """A 4-step (2-batch) run with a checkpoint after each batch: epoch=0-step=2.ckpt, epoch=0-step=4.ckpt and
    last.ckpt, written by svc-pl fit. Tests copy it before changing anything."""
    tmp = tmp_path_factory.mktemp("checkpointed")
    every = tmp / "every-batch.yaml"
    every.write_text("trainer:\n  callbacks:\n    - class_path: pytorch_lightning.callbacks.ModelCheckpoint\n"
                     "      init_args: {filename: '{epoch}-{step}', save_last: true, save_top_k: -1, "
                     "every_n_train_steps: 2}\n")
    _fit(tmp / "run", dataset, "--config", str(every), "--trainer.max_steps", "4", "--trainer.limit_val_batches", "0",
         "--data.batch_size", "2")
    return tmp / "run"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.mark.slow  # a 4-step run (shared) and a 2-step resume
def test_resume_last_with_a_truncated_last_ckpt_names_it_and_the_checkpoint_to_resume_from(
        tmp_path, dataset, checkpointed_run, capsys):
    """``--ckpt_path last`` whose newest last.ckpt was cut short (a crash outside the atomic writer, a copy that
    stopped): no silent fall-back to an older step or to step 0. The error names the file, says it is truncated,
    and names the run's newest readable checkpoint; nothing is written; that checkpoint resumes."""
    run = tmp_path / "run"
    shutil.copytree(checkpointed_run, run)
    (last,) = run.rglob("last.ckpt")
    step2, step4 = (next(run.rglob(f"epoch=0-step={n}.ckpt")) for n in (2, 4))
    os.utime(step2, (1_000_000, 1_000_000))  # the newest other checkpoint is step 4's, whatever the clock did
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = {p: p.read_bytes() if p.is_file() else None for p in run.rglob("*")}

    def resume_last(*extra):
        return cli_main(["fit", "--config", TINY, "--data.dataset_dir", str(dataset), "--trainer.default_root_dir",
                         str(run), "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0",
                         "--data.batch_size", "2", "--trainer.max_steps", "6", "--ckpt_path", "last", *extra])

    assert resume_last() == 2
    line = _error_line(capsys)
    assert f"{last}: cannot be read as a checkpoint (" in line, line
    assert ("It is truncated or corrupt; resume from another checkpoint in the same folder (--ckpt_path PATH) or "
            f"delete it. The run's newest other checkpoint: --ckpt_path {step4}") in line, line
    assert {p: p.read_bytes() if p.is_file() else None for p in run.rglob("*")} == before, "it wrote something"
    # deleted, as the error offers: `last` still does not start over, it names the checkpoint to resume from
    last.unlink()
    assert resume_last() == 2
    assert _error_line(capsys).endswith(f"no last.ckpt found under {run}; resume from its newest checkpoint with "
                                        f"--ckpt_path {step4}, or drop --ckpt_path to start a new run")
    # the named checkpoint resumes at its step
    assert cli_main(["fit", "--config", TINY, "--data.dataset_dir", str(dataset), "--trainer.default_root_dir",
                     str(run), "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0",
                     "--data.batch_size", "2", "--trainer.max_steps", "6", "--ckpt_path", str(step4)]) == 0
    assert torch.load(next(run.rglob("last.ckpt")), weights_only=True)["global_step"] == 6
    # a run whose only checkpoint is the truncated last.ckpt says that there is nothing else to resume from
    alone = tmp_path / "alone"
    (alone / "checkpoints").mkdir(parents=True)
    (alone / "checkpoints" / "last.ckpt").write_bytes(before[step4][:1000])
    assert cli_main(["fit", "--config", TINY, "--data.dataset_dir", str(dataset), "--trainer.default_root_dir",
                     str(alone), "--ckpt_path", "last"]) == 2
    assert _error_line(capsys).endswith("The run has no other checkpoint: delete it and drop --ckpt_path to start "
                                        "a new run.")


@pytest.mark.slow
def test_two_process_ddp_writes_one_set_of_outputs(tmp_path, dataset):
    from tests.rank_probe import probe_env, read_probe

    root = tmp_path / "run"
    cmd = [sys.executable, "-m", "svc_pl.cli", "fit", "--config", TINY, "--data.dataset_dir", str(dataset),
           "--trainer.default_root_dir", str(root), "--trainer.devices", "2", "--trainer.accelerator", "cpu",
           "--trainer.max_steps", "4", "--trainer.enable_progress_bar", "false", "--data.batch_size", "2",
           "--trainer.check_val_every_n_epoch", "1"]
    env = probe_env(tmp_path / "probe", dict(os.environ, OMP_NUM_THREADS="1"), REPO)
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    versions = list(root.rglob("version_*"))
    assert len(versions) == 1, versions
    assert len(list(root.rglob("events.out.tfevents.*"))) == 1
    assert len(list(root.rglob("last.ckpt"))) == 1
    assert torch.load(_last_ckpt(root), weights_only=True)["global_step"] == 4
    # two ranks trained, on different clips at every step, and between them on every training clip
    rows = read_probe(tmp_path / "probe", "train")
    assert rows and {r["world"] for r in rows} == {2}
    steps = sorted({r["step"] for r in rows})
    assert len(steps) == 2, rows  # 4 optimizer steps = 2 batches per rank
    train = set((dataset / "train.txt").read_text().split())
    for step in steps:
        files = {rank: [f for r in rows if r["rank"] == rank and r["step"] == step for f in r["files"]]
                 for rank in (0, 1)}
        assert files[0] and files[1] and not set(files[0]) & set(files[1]), (step, files)
        assert set(files[0] + files[1]) == train, files


@pytest.mark.parametrize("args, find_unused", [
    ([], None),  # tiny-nsf: one device, no DDP
    (["--trainer.devices", "auto"], None),  # auto on CPU: one device
    (["--trainer.devices", "2"], True),
    (["--trainer.num_nodes", "2"], True),
    (["--trainer.devices", "2", "--trainer.strategy", "ddp"], False),  # the user's own strategy is kept
], ids=["one-device", "auto-on-cpu", "two-devices", "two-nodes", "user-strategy"])
def test_ddp_tolerates_unused_parameters_when_several_processes_train(tmp_path, dataset, monkeypatch, args,
                                                                      find_unused):
    """The strategy svc-pl fit builds, without running it: DDP with unused-parameter detection exactly when the
    run has several processes and the strategy was left at auto."""
    from pytorch_lightning import Trainer
    from pytorch_lightning.strategies import DDPStrategy, SingleDeviceStrategy

    built = []
    monkeypatch.setattr(Trainer, "fit", lambda trainer, *a, **k: built.append(trainer.strategy))
    assert cli_main(["fit", "--config", TINY, "--data.dataset_dir", str(dataset), "--trainer.default_root_dir",
                     str(tmp_path / "run"), "--trainer.accelerator", "cpu", *args]) == 0
    (strategy,) = built
    if find_unused is None:
        assert isinstance(strategy, SingleDeviceStrategy), strategy
    else:
        assert isinstance(strategy, DDPStrategy), strategy
        assert strategy._ddp_kwargs.get("find_unused_parameters", False) is find_unused


def test_devices_auto_counts_every_gpu(monkeypatch):
    """``devices: auto`` (Lightning's default) and -1 train on every GPU: with two, that is DDP and needs the
    unused-parameter detection too (checked without GPUs, on the decision alone)."""
    from svc_pl.lightning.cli import several_processes

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert several_processes({"devices": "auto", "accelerator": "auto"})
    assert several_processes({"devices": -1, "accelerator": "gpu"})
    assert several_processes({"accelerator": "cuda"})
    assert several_processes({"devices": "0,1", "accelerator": "gpu"})
    assert several_processes({"devices": [0, 1], "accelerator": "gpu"})
    assert not several_processes({"devices": "auto", "accelerator": "cpu"})
    assert not several_processes({"devices": "1,", "accelerator": "gpu"})  # GPU 1 alone
    assert not several_processes({"devices": [1], "accelerator": "gpu"})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert not several_processes({"devices": "auto", "accelerator": "auto"})


@pytest.mark.slow  # one short subprocess
def test_plain_ddp_rejects_the_gan_step(tmp_path, dataset):
    """Why the choice above exists: each optimizer step leaves the other network without gradients, and plain
    DDP (``--trainer.strategy ddp``, kept as the user's choice) stops at the first step, here in one process."""
    cmd = [sys.executable, "-m", "svc_pl.cli", "fit", "--config", TINY, "--data.dataset_dir", str(dataset),
           "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.accelerator", "cpu",
           "--trainer.devices", "1", "--trainer.strategy", "ddp", "--trainer.max_steps", "4",
           "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false", "--data.batch_size", "2"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "has parameters that were not used in producing the loss" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_finetune_from_sovits_base(tmp_path, fixture_dir):
    # the fixture model: 44.1 kHz, hop 512, 48-d units, 2 speakers; our data has 3 speakers
    ds = make_dataset(tmp_path / "ds44", sr=44100, hop=512, unit_dim=48, voices=("en", "en+f3", "en+m3"),
                      clips_per_voice=2, n_fft=2048)
    net = ["--model.net.inter_channels", "32", "--model.net.hidden_channels", "32", "--model.net.filter_channels", "64",
           "--model.net.n_layers", "2", "--model.net.upsample_rates", "[8, 8, 2, 2, 2]",
           "--model.net.upsample_kernel_sizes", "[16, 16, 4, 4, 4]", "--model.net.upsample_initial_channel", "64",
           "--model.net.resblock_kernel_sizes", "[3, 7, 11]",
           "--model.net.resblock_dilation_sizes", "[[1, 3, 5], [1, 3, 5], [1, 3, 5]]", "--model.net.gin_channels", "32",
           "--model.net.n_flow_layer", "4", "--model.segment_size", "10240", "--model.mel_fmax", "22050",
           "--data.max_frames", "80", "--model.init_from", str(fixture_dir / "G_0.pth"),
           "--model.init_discriminator_from", "", "--model.learning_rate", "0.0005"]
    _fit(tmp_path / "run", ds, "--trainer.max_steps", "40", "--trainer.limit_val_batches", "0",
         "--trainer.log_every_n_steps", "1", "--data.batch_size", "3", *net)
    mel, _ = _scalars(tmp_path / "run", "loss/g/mel")
    first, last = sum(v for _, v in mel[:4]) / 4, sum(v for _, v in mel[-4:]) / 4
    assert last < 0.9 * first, (first, last)  # measured 2.50 -> 1.98
    # svc-pl export names the files by the checkpoint's step (40 optimizer steps = 20 batches) and writes
    # the run's whole G and D, and a config.json that describes the run
    from svc_pl.compat import load_sovits, to_sovits_state_dict
    from svc_pl.layers.discriminator import MultiPeriodDiscriminator

    ckpt = _last_ckpt(tmp_path / "run")
    assert cli_main(["export", str(ckpt), "-o", str(tmp_path / "cli_export")]) == 0
    out = tmp_path / "cli_export"
    assert sorted(p.name for p in out.iterdir()) == ["D_20.pth", "G_20.pth", "config.json"]
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    trained = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    exported = load_sovits(out / "G_20.pth", out / "config.json").state_dict()
    assert trained and set(exported) == set(trained), set(exported) ^ set(trained)
    for k, v in trained.items():
        assert torch.equal(exported[k], v), k
    # D: the tiny config's discriminator is 0.25 wide, so compare the file with the run's D in so-vits-svc names
    disc = MultiPeriodDiscriminator(width=0.25)
    disc.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("disc.")})
    expected_d = to_sovits_state_dict(disc)
    written_d = torch.load(out / "D_20.pth", map_location="cpu", weights_only=True)["model"]
    assert expected_d and set(written_d) == set(expected_d), set(written_d) ^ set(expected_d)
    for k, v in expected_d.items():
        assert torch.equal(written_d[k], v), k
    for f in ("G_20.pth", "D_20.pth"):
        assert torch.load(out / f, map_location="cpu", weights_only=True)["iteration"] == 20
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["spk"] == {"spk0": 0, "spk1": 1, "spk2": 2}
    assert cfg["data"]["sampling_rate"] == 44100 and cfg["data"]["hop_length"] == 512
    assert cfg["data"]["filter_length"] == cfg["data"]["win_length"] == 2048 and cfg["data"]["mel_fmax"] == 22050
    assert cfg["train"]["segment_size"] == 10240 and cfg["train"]["learning_rate"] == 0.0005
    m = cfg["model"]
    assert (m["ssl_dim"], m["n_speakers"], m["gin_channels"]) == (48, 3, 32)
    assert (m["hidden_channels"], m["inter_channels"]) == (32, 32)
    assert (m["filter_channels"], m["n_layers"], m["upsample_rates"], m["n_flow_layer"]) == (64, 2, [8, 8, 2, 2, 2], 4)
    assert m["upsample_initial_channel"] == 64 and m["resblock_kernel_sizes"] == [3, 7, 11]


def _nan_kl(monkeypatch, bad_calls):
    """Make the KL loss NaN on the given (0-based) calls, i.e. batches."""
    import svc_pl.lightning.module as module

    calls = []
    kl = module.kl_loss

    def maybe_nan(*args):
        calls.append(len(calls))
        loss = kl(*args)
        return loss * float("nan") if calls[-1] in bad_calls else loss

    monkeypatch.setattr(module, "kl_loss", maybe_nan)
    return calls


@pytest.mark.slow
def test_nonfinite_loss_skips_the_step(tmp_path, dataset, monkeypatch, caplog):
    """A NaN generator loss on the only batch skips the generator step: G keeps its initial weights (the
    discriminator, whose loss was finite, trains), the run goes on and says so."""
    snapshot = {}
    start = SVCModule.on_train_start

    def keep_initial(self):
        snapshot.update({k: v.detach().clone() for k, v in self.state_dict().items()})
        return start(self) if start is not None else None

    monkeypatch.setattr(SVCModule, "on_train_start", keep_initial)
    calls = _nan_kl(monkeypatch, {0})
    with caplog.at_level("WARNING", logger="svc_pl"):
        # 1 optimizer step: the discriminator's (the generator's was skipped, and Lightning counts only steps taken)
        _fit(tmp_path / "run", dataset, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
             "--data.batch_size", "4")
    assert calls == [0]
    assert any("non-finite generator loss" in r.getMessage() for r in caplog.records)
    state = torch.load(_last_ckpt(tmp_path / "run"), weights_only=True)["state_dict"]
    g = [k for k in state if k.startswith("net.")]
    assert g and all(torch.equal(state[k], snapshot[k]) for k in g)
    assert any(not torch.equal(state[k], snapshot[k]) for k in state if k.startswith("disc."))


def test_max_nonfinite_steps_stops_with_a_clear_error(tmp_path, dataset, monkeypatch, capsys):
    _nan_kl(monkeypatch, set(range(100)))
    code = cli_main(["fit", "--config", TINY, "--data.dataset_dir", str(dataset), "--trainer.default_root_dir",
                     str(tmp_path / "run"), "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "20",
                     "--trainer.limit_val_batches", "0", "--data.batch_size", "1", "--model.max_nonfinite_steps", "2"])
    err = capsys.readouterr().err
    assert code != 0 and "2 consecutive non-finite losses" in err and "Traceback" not in err, err[-2000:]


@pytest.mark.slow
def test_bf16_mixed_training_step(tmp_path, dataset):
    _fit(tmp_path / "run", dataset, "--trainer.precision", "bf16-mixed", "--trainer.max_steps", "4",
         "--trainer.limit_val_batches", "0", "--data.batch_size", "2", "--trainer.log_every_n_steps", "1")
    for tag in ("loss/g/total", "loss/d/total", "grad_norm_g"):
        values, _ = _scalars(tmp_path / "run", tag)
        assert len(values) == 2 and all(np.isfinite(v) for _, v in values), (tag, values)
    state = torch.load(_last_ckpt(tmp_path / "run"), weights_only=True)
    assert state["global_step"] == 4 and all(torch.isfinite(v).all() for v in state["state_dict"].values()
                                             if v.is_floating_point())


def test_unvoiced_f0_hold_gives_training_clips_the_streams_f0(dataset, monkeypatch):
    """``--data.unvoiced_f0_hold P``: that share of training clips has the last voiced F0 on its unvoiced frames (what
    a live stream feeds the model), the rest the interpolation a file gets; voiced frames and validation unchanged.
    The tiny config (what the base and fine-tunes of it train with) asks for half."""
    import yaml

    from svc_pl.data.datamodule import SVCDataModule
    from svc_pl.data.pitch import hold_unvoiced

    def items(hold: float, split_train: bool = True):
        dm = SVCDataModule(str(dataset), batch_size=2, num_workers=0, max_frames=None, unvoiced_f0_hold=hold)
        dm.setup("fit")
        ds = dm.train_set if split_train else dm.val_set
        return [ds[(i, e)] for e in range(4) for i in range(len(ds))]

    interpolated, held, half = items(0.0), items(1.0), items(0.5)
    changed = 0
    for a, b, c in zip(interpolated, held, half):
        v = a["voiced"] > 0
        assert torch.equal(a["f0"][v], b["f0"][v]) and torch.equal(a["f0"][v], c["f0"][v])
        assert torch.equal(b["f0"], hold_unvoiced(a["f0"], a["voiced"]))
        changed += not torch.equal(a["f0"], b["f0"])
        assert torch.equal(c["f0"], a["f0"]) or torch.equal(c["f0"], b["f0"])
    assert changed >= len(held) // 2  # the clips have unvoiced gaps between voiced frames
    n_held = sum(not torch.equal(a["f0"], c["f0"]) for a, b, c in zip(interpolated, held, half) if
                 not torch.equal(a["f0"], b["f0"]))
    assert 0.2 * changed <= n_held <= 0.8 * changed
    for a, b in zip(items(0.0, False), items(1.0, False)):
        assert torch.equal(a["f0"], b["f0"])  # validation: the file's F0
    config = yaml.safe_load((REPO / "svc_pl" / "configs" / "tiny.yaml").read_text())
    assert config["data"]["unvoiced_f0_hold"] == 0.5


def test_hold_unvoiced():
    from svc_pl.data.pitch import hold_unvoiced

    f0 = torch.tensor([120.0, 120.0, 100.0, 130.0, 160.0, 190.0, 200.0, 200.0])
    voiced = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert hold_unvoiced(f0, voiced).tolist() == [120.0, 120.0, 100.0, 100.0, 100.0, 100.0, 200.0, 200.0]
    assert hold_unvoiced(f0, torch.zeros(8)).tolist() == f0.tolist()
