"""Crash-safe training and model files that cannot run code.

``--ckpt_path last`` resumes the run it names (step, epoch, optimizer, scheduler, TensorBoard steps, same
logger version) or stops; a run killed with SIGKILL at any moment, or whose disk fills during a checkpoint
write, resumes from its last complete checkpoint; a pickle that would run a command is refused by every
loader a user hands a file to, with one error and without running it.
"""

import errno
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from svc_pl.cli import main as cli_main
from tests.datasets import make_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "svc_pl" / "configs" / "tiny-nsf.yaml")
FAST = ["--trainer.enable_progress_bar", "false", "--trainer.check_val_every_n_epoch", "1000",
        "--trainer.log_every_n_steps", "1"]
# a checkpoint (top-k file and last.ckpt) every optimizer-step pair, i.e. every batch
EVERY_BATCH = """\
trainer:
  callbacks:
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args:
        filename: "{epoch}-{step}"
        save_last: true
        save_top_k: 2
        monitor: step
        mode: max
        every_n_train_steps: 2
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), clips_per_voice=3)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, dataset):
    """A run of 6 optimizer steps (3 batches). The resume test continues it in place (a copied run would not
    be the same run: ModelCheckpoint keeps its state only in the folder it wrote); others only read last.ckpt."""
    root = tmp_path_factory.mktemp("first") / "run"
    assert cli_main(_fit_args(root, dataset, "--trainer.max_steps", "6")) == 0
    return root


def _fit_args(root, dataset, *extra):
    return ["fit", "--config", TINY, "--data.dataset_dir", str(dataset), "--trainer.default_root_dir", str(root),
            *FAST, *extra]


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _last_ckpts(root):
    return sorted(Path(root).rglob("last*.ckpt"))


def _temp_files(root):
    return sorted(p for p in Path(root).rglob(".*.tmp"))


def _steps(event_file, tag="loss/g/total"):
    acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": error: " in line]


# ---------------------------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_resume_last_continues_the_same_run(dataset, first_run):
    root = first_run
    (first_ckpt,) = _last_ckpts(root)
    first = _load(first_ckpt)
    (first_events,) = root.rglob("events.out.tfevents.*")
    # the user's command, with one model setting changed: the config given wins over the checkpoint's
    assert cli_main(_fit_args(root, dataset, "--trainer.max_steps", "10", "--ckpt_path", "last",
                              "--model.val_media_every", "3")) == 0

    assert [p.name for p in (root / "lightning_logs").iterdir()] == ["version_0"], "a new logger version"
    assert _last_ckpts(root) == [first_ckpt] and not _temp_files(root)
    resumed = _load(first_ckpt)
    assert first["global_step"] == 6 and resumed["global_step"] == 10
    assert resumed["hyper_parameters"]["val_media_every"] == 3
    # epoch and the per-epoch scheduler went on from where they were (not from 0)
    assert first["epoch"] > 0 and resumed["epoch"] > first["epoch"]
    for ckpt in (first, resumed):
        assert [s["last_epoch"] for s in ckpt["lr_schedulers"]] == [ckpt["epoch"]] * 2
    # AdamW counts its steps: 3 batches, then 2 more
    for ckpt, n in ((first, 3), (resumed, 5)):
        assert {float(s["step"]) for opt in ckpt["optimizer_states"] for s in opt["state"].values()} == {n}
    # the resumed part logs into the same version, after the first run's last step, one point per batch
    events = sorted(root.rglob("events.out.tfevents.*"))
    assert len(events) == 2 and first_events in events
    before = _steps(first_events)
    after = _steps(next(e for e in events if e != first_events))
    assert len(before) == 3 and len(after) == 2 and min(after) > max(before), (before, after)


@pytest.mark.slow
def test_a_moved_run_resumes_and_keeps_writing_last_ckpt(tmp_path, dataset, first_run):
    """A run folder copied and moved elsewhere (trained on one machine, continued on another) and resumed with
    the user's command goes on in its last.ckpt: no last-v1.ckpt beside a last.ckpt left at the old step."""
    shutil.copytree(first_run, tmp_path / "copied")
    root = (tmp_path / "copied").rename(tmp_path / "moved")
    (moved_last,) = _last_ckpts(root)
    start = _load(moved_last)["global_step"]  # 6, or 10 after test_resume_last_continues_the_same_run
    (original_last,) = _last_ckpts(first_run)
    assert cli_main(_fit_args(root, dataset, "--trainer.max_steps", str(start + 4), "--ckpt_path", "last")) == 0

    assert _last_ckpts(root) == [moved_last], _last_ckpts(root)
    resumed = _load(moved_last)
    assert resumed["global_step"] == start + 4
    # it continued from the moved checkpoint (AdamW's step count: its batches, then 2 more), not from scratch
    batches = {float(s["step"]) for opt in resumed["optimizer_states"] for s in opt["state"].values()}
    assert batches == {start / 2 + 2}, batches
    assert _load(original_last)["global_step"] == start  # the original folder is left as it was


def test_resume_last_with_no_checkpoint_stops(tmp_path, dataset, capsys):
    root = tmp_path / "empty run"
    code = cli_main(_fit_args(root, dataset, "--trainer.max_steps", "2", "--ckpt_path", "last"))
    assert code == 2
    err = capsys.readouterr().err
    assert f"no last.ckpt found under {root}; drop --ckpt_path to start a new run" in err
    assert not list(root.rglob("*.ckpt"))


def test_resume_last_picks_the_newest_last_ckpt_of_any_version(tmp_path):
    from svc_pl.lightning.cli import find_last_checkpoint

    old = tmp_path / "lightning_logs" / "version_3" / "checkpoints" / "last.ckpt"
    new = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    for path, mtime in ((old, 1_000_000), (new, 2_000_000)):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
    (new.parent / "epoch=0-step=2.ckpt").write_bytes(b"x")
    assert find_last_checkpoint([tmp_path]) == new.resolve()
    assert find_last_checkpoint([tmp_path / "nothing here"]) is None


@pytest.mark.slow  # a 6-step training run (shared)
def test_truncated_ckpt_path_names_the_file(tmp_path, dataset, first_run, capsys):
    (real,) = _last_ckpts(first_run)
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    code = cli_main(_fit_args(tmp_path / "r", dataset, "--trainer.max_steps", "2", "--ckpt_path", str(bad)))
    assert code == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{bad}: cannot be read as a checkpoint (" in line
    assert not (tmp_path / "r").exists(), "nothing was built before the file was checked"


# ---------------------------------------------------------------------------------------------- crashes


def _cmd(root, dataset, extra_config, max_steps, *extra):
    return [sys.executable, "-m", "svc_pl.cli", *_fit_args(root, dataset, "--config", str(extra_config),
                                                           "--trainer.max_steps", str(max_steps), *extra)]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for(predicate, proc, timeout=120.0, interval=0.002):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(interval)
    return False


@pytest.mark.slow
def test_sigkill_at_any_moment_resumes_from_the_last_complete_checkpoint(tmp_path, dataset):
    root, max_steps = tmp_path / "run", 20
    extra = tmp_path / "every-batch.yaml"
    extra.write_text(EVERY_BATCH)
    rng = random.Random(0)
    ckpt_dir = root / "lightning_logs" / "version_0" / "checkpoints"
    killed_mid_write, done_steps = 0, 0

    def newest_last():
        return max(_last_ckpts(root), key=os.path.getmtime)

    # SIGKILL while a checkpoint is being written, at a random moment after one, while writing again; then a
    # run left to finish. Each kill comes after at least one complete checkpoint of that run.
    for i, when in enumerate(["write", "random", "write", None]):
        start_from = newest_last().resolve() if i else None
        log = tmp_path / f"run{i}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(_cmd(root, dataset, extra, max_steps, *(["--ckpt_path", "last"] if i else [])),
                                    cwd=tmp_path, env=_env(), stdout=out, stderr=subprocess.STDOUT)
            try:
                if when is not None:
                    seen = {p: p.stat().st_mtime_ns for p in _last_ckpts(root)}
                    wrote = _wait_for(lambda: any(p.stat().st_mtime_ns != seen.get(p) for p in _last_ckpts(root)),
                                      proc)
                    if wrote and when == "write":
                        _wait_for(lambda: bool(_temp_files(ckpt_dir)), proc)
                    elif wrote:
                        time.sleep(rng.uniform(0.0, 1.5))
                    if proc.poll() is None:
                        _kill(proc)
                assert proc.wait(timeout=300) in (0, -signal.SIGKILL), log.read_text()[-3000:]
            finally:
                if proc.poll() is None:
                    _kill(proc)
        killed_mid_write += bool(_temp_files(root))
        text = log.read_text()
        if start_from is not None:  # it resumed where the previous run got to
            assert f"Restored all states from the checkpoint at {start_from}" in text, text[-3000:]
        for ckpt in root.rglob("*.ckpt"):  # every checkpoint is complete and readable
            assert "state_dict" in _load(ckpt), ckpt
        step = _load(newest_last())["global_step"]
        assert step > done_steps or step == max_steps, (i, step, done_steps)
        done_steps = step

    assert proc.returncode == 0 and done_steps == max_steps
    assert killed_mid_write >= 1, "no kill hit a checkpoint write: the test did not test that"
    assert not _temp_files(root), _temp_files(root)
    assert [p.name for p in (root / "lightning_logs").iterdir()] == ["version_0"]
    assert len(_last_ckpts(root)) == 1


@pytest.mark.slow
def test_disk_full_during_checkpoint_write_keeps_the_previous_one(tmp_path, dataset, capsys, monkeypatch):
    root = tmp_path / "run"
    extra = tmp_path / "every-batch.yaml"
    extra.write_text(EVERY_BATCH)
    real_save, calls = torch.save, []

    class FullDisk(io.RawIOBase):
        """A file that takes 100 kB, then fails as a full disk does (torch.save turns it into a RuntimeError)."""

        def __init__(self, f):
            self.f, self.left = f, 100_000

        def writable(self):
            return True

        def write(self, data):
            if len(data) > self.left:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.left -= len(data)
            return self.f.write(data)

    def save_until_disk_full(obj, f, *args, **kwargs):
        calls.append(f)
        # step 2: the top-k file and last.ckpt; step 4: the top-k file, then the disk is full
        return real_save(obj, f if len(calls) < 4 else FullDisk(f), *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_disk_full)
    code = cli_main(_fit_args(root, dataset, "--config", str(extra), "--trainer.max_steps", "8"))
    monkeypatch.setattr(torch, "save", real_save)
    assert code == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "could not write the checkpoint (No space left on device)" in line and "--ckpt_path last" in line
    (last,) = _last_ckpts(root)
    assert _load(last)["global_step"] == 2 and not _temp_files(root)
    assert all("state_dict" in _load(ckpt) for ckpt in root.rglob("*.ckpt"))

    assert cli_main(_fit_args(root, dataset, "--config", str(extra), "--trainer.max_steps", "6",
                              "--ckpt_path", "last")) == 0
    assert _load(last)["global_step"] == 6


def test_stale_temp_files_are_removed_at_the_first_write(tmp_path):
    from svc_pl.lightning.checkpoint_io import AtomicCheckpointIO

    stale = tmp_path / ".last.ckpt.k2j3h4.tmp"
    stale.write_bytes(b"half a checkpoint")
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, tmp_path / "last.ckpt")
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.equal(AtomicCheckpointIO().load_checkpoint(tmp_path / "last.ckpt")["state_dict"]["w"], torch.ones(2))


# ---------------------------------------------------------------------------------------------- no code from files


class _RunsCommand:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture
def evil(tmp_path):
    """``evil.ckpt`` and ``evil.pth`` whose unpickling would create ``MARKER``; returns (ckpt, pth, marker)."""
    marker = tmp_path / "MARKER"
    ckpt, pth = tmp_path / "evil.ckpt", tmp_path / "evil.pth"
    torch.save({"state_dict": {"net.w": torch.zeros(1)}, "pytorch-lightning_version": "2.6.0",
                "payload": _RunsCommand(marker)}, ckpt)
    torch.save({"model": {"w": torch.zeros(1)}, "iteration": 1, "payload": _RunsCommand(marker)}, pth)
    return ckpt, pth, marker


def _refused(capsys, code, path, marker, *, ckpt=True):
    err = capsys.readouterr().err
    assert code != 0 and not marker.exists(), err[-2000:]
    assert "Traceback" not in err
    (line,) = _error_lines(err)
    assert str(path) in line
    if ckpt:
        assert "contains objects other than tensors and plain data" in line and "was not loaded" in line


def test_infer_refuses_a_model_that_runs_code(tmp_path, evil, capsys):
    ckpt, _, marker = evil
    wav = tmp_path / "in.wav"
    sf.write(wav, (0.3 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)).astype(np.float32), 16000)
    code = cli_main(["infer", str(wav), "-o", str(tmp_path / "out"), "-m", str(ckpt), "--random-encoder"])
    _refused(capsys, code, ckpt, marker)


def test_export_refuses_a_model_that_runs_code(tmp_path, evil, capsys):
    ckpt, _, marker = evil
    code = cli_main(["export", str(ckpt), "-o", str(tmp_path / "out")])
    _refused(capsys, code, ckpt, marker)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, kind", [("--ckpt_path", "ckpt"), ("--ckpt_path", "pth"),
                                          ("--model.init_from", "ckpt"), ("--model.init_from", "pth"),
                                          ("--model.init_discriminator_from", "pth")])
def test_fit_refuses_a_file_that_runs_code(tmp_path, dataset, evil, capsys, option, kind):
    ckpt, pth, marker = evil
    path = ckpt if kind == "ckpt" else pth
    code = cli_main(_fit_args(tmp_path / "run", dataset, "--trainer.max_steps", "2", option, str(path)))
    _refused(capsys, code, path, marker, ckpt=kind == "ckpt" or option == "--ckpt_path")


def test_sovits_loaders_refuse_a_file_that_runs_code(tmp_path, evil, fixture_dir):
    from svc_pl.compat import load_sovits, load_sovits_discriminator
    from svc_pl.compat.checkpoint import read_checkpoint
    from svc_pl.errors import UserFacingError

    _, pth, marker = evil
    shutil.copy(fixture_dir / "config.json", tmp_path / "config.json")
    for load in (read_checkpoint, lambda p: load_sovits(p, tmp_path / "config.json"), load_sovits_discriminator):
        with pytest.raises(UserFacingError, match="evil.pth"):
            load(pth)
    assert not marker.exists()


@pytest.mark.slow  # a 6-step training run (shared)
def test_real_checkpoints_load_weights_only_and_without_lightning(first_run):
    (ckpt,) = _last_ckpts(first_run)
    hp = _load(ckpt)["hyper_parameters"]  # torch.load(weights_only=True) accepts what svc-pl fit writes
    assert {"net", "dataset_info", "segment_frames"} <= set(hp)
    # loaded and converting through the synthesizer's own builder, in a process that never imports Lightning
    code = ("import sys, torch; from svc_pl.infer.loading import load_voice_model; "
            f"vm = load_voice_model({str(ckpt)!r}); "
            "assert vm.speakers == {'spk0': 0, 'spk1': 1}, vm.speakers; "
            "audio, _ = vm.net.infer(torch.randn(1, vm.net.ssl_dim, 30), torch.full((1, 30), 200.0), "
            "torch.ones(1, 30), 1); assert audio.shape == (1, 1, 30 * vm.hop_length), audio.shape; "
            "heavy = [m for m in ('pytorch_lightning', 'lightning', 'svc_pl.lightning.module') if m in sys.modules]; "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
