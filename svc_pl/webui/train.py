"""What the web UI's Train tab does, without Gradio: preprocess a dataset folder and train on it as ``svc-pl``
processes of their own (a closed browser or a reloaded page loses nothing), stop them, resume with
``--ckpt_path last``, and read the progress and losses from the run's TensorBoard events."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from svc_pl.errors import UserFacingError

LOG = logging.getLogger(__name__)

LOSS_TAGS = ("loss/g/total", "loss/d/total", "loss/g/mel", "val/mel")
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class TrainRequest:
    """One training run: ``dataset`` is either a folder of ``<speaker>/*.wav`` (preprocessed first into
    ``RUN/data``) or a preprocessed dataset (with ``dataset.json``)."""

    dataset: str
    name: str
    config: str = "tiny"
    init_from: str | None = "tiny-base"
    max_steps: int = 400
    checkpoint_every: int = 100
    log_every: int = 10
    f0_method: str = "pm"


class Trainer:
    """Starts, stops, resumes and reports ``svc-pl fit`` runs under ``runs`` (one at a time)."""

    def __init__(self, runs: Path, content_encoder: str | None = None, encoder: str | None = None,
                 random_encoder: bool = False):
        self.runs = Path(runs)
        self.encoder_flags = ([f"--content-encoder={content_encoder}"] if content_encoder else []) + (
            [f"--encoder={encoder}"] if encoder else []) + (["--random-encoder"] if random_encoder else [])
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.run_dir: Path | None = None
        self.state = "idle"

    # ---------------------------------------------------------------------------------------------- actions
    def start(self, req: TrainRequest, resume: bool = False) -> str:
        """Start (or with ``resume`` continue) the run ``req.name``; returns a one-line status."""
        if not _RUN_NAME.fullmatch(req.name or ""):
            raise UserFacingError(f"run name {req.name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
        with self._lock:
            if self.running:
                raise UserFacingError(f"{self.run_dir.name} is still running: stop it first")
            run = self.runs / req.name
            data = Path(req.dataset) if req.dataset else None
            if not resume:
                if data is None or not data.is_dir():
                    raise UserFacingError(f"dataset folder {req.dataset!r} not found")
                if not (data / "dataset.json").is_file() and not any(p.is_dir() for p in data.iterdir()):
                    raise UserFacingError(f"{data}: expected one sub-folder of recordings per speaker, or a "
                                          "preprocessed dataset (dataset.json)")
            elif not any(run.rglob("last*.ckpt")):
                raise UserFacingError(f"{run}: no last.ckpt to resume from yet")
            run.mkdir(parents=True, exist_ok=True)
            self.run_dir, self._stopping, self.state = run, False, "starting"
            self._thread = threading.Thread(target=self._work, args=(req, run, resume), daemon=True)
            self._thread.start()
        return f"{'resuming' if resume else 'starting'} {req.name}"

    def stop(self) -> str:
        """Interrupt the running process (Lightning stops gracefully on SIGINT); returns a one-line status."""
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return "nothing is running"
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return f"stopped {self.run_dir.name}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ----------------------------------------------------------------------------------------------- status
    def status(self) -> dict:
        """``{"run", "state", "step", "max_step_logged", "losses": {tag: [[step, value], ...]}, "log"}``."""
        run = self.run_dir
        losses = read_scalars(run) if run else {}
        steps = [s for curve in losses.values() for s, _ in curve]
        log = (run / "webui-train.log") if run else None
        tail = log.read_text(errors="replace").splitlines()[-15:] if log and log.is_file() else []
        return {"run": str(run) if run else None, "state": self.state, "step": max(steps, default=0),
                "losses": losses, "log": "\n".join(tail)}

    # -------------------------------------------------------------------------------------------- the work
    def _work(self, req: TrainRequest, run: Path, resume: bool) -> None:
        log = run / "webui-train.log"
        data = Path(req.dataset) if req.dataset else run / "data"
        try:
            with open(log, "a", encoding="utf-8") as out:
                if not resume and not (data / "dataset.json").is_file():
                    self.state = "preprocessing"
                    pre = run / "data"
                    if self._run([*_svc_pl(), "preprocess", str(data), str(pre), f"--f0={req.f0_method}",
                                  *self.encoder_flags, *_rate_flags(req.config), "--no-progress"], out) != 0:
                        return
                    data = pre
                if resume:
                    data = _recorded_dataset(run) or data
                ckpt = run / "webui-checkpoint.yaml"
                ckpt.write_text(_checkpoint_yaml(req.checkpoint_every), encoding="utf-8")
                (run / "webui-dataset.txt").write_text(str(data), encoding="utf-8")
                cmd = [*_svc_pl(), "fit", "--config", req.config, "--config", str(ckpt),
                       f"--data.dataset_dir={data}", f"--trainer.default_root_dir={run}",
                       f"--trainer.max_steps={int(req.max_steps)}", f"--trainer.log_every_n_steps={int(req.log_every)}"]
                if req.init_from and not resume:
                    cmd.append(f"--model.init_from={req.init_from}")
                if resume:
                    cmd += ["--ckpt_path", "last"]
                self.state = "training"
                self._run(cmd, out)
        except OSError as err:
            LOG.error("training %s failed: %s", run, err)
            self.state = f"failed: {err}"

    def _run(self, cmd: list[str], out) -> int:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        with self._lock:
            if self._stopping:
                self.state = "stopped"
                return 1
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)  # its own group: stop reaches its workers
        rc = self._proc.wait()
        self.state = "stopped" if self._stopping else "finished" if rc == 0 else f"failed (exit status {rc})"
        return rc


def _svc_pl() -> list[str]:
    return [sys.executable, "-m", "svc_pl.cli"]


def _rate_flags(config: str) -> list[str]:
    """Preprocess flags matching the shipped configs (16 kHz for the tiny ones, 4.1's 44.1 kHz otherwise)."""
    if config in ("tiny", "tiny-nsf"):
        return ["--sampling-rate=16000", "--hop-length=320", "--filter-length=1024"]
    return []


def _recorded_dataset(run: Path) -> Path | None:
    p = run / "webui-dataset.txt"
    return Path(p.read_text(encoding="utf-8").strip()) if p.is_file() else None


def _checkpoint_yaml(every: int) -> str:
    return ("trainer:\n  callbacks:\n    - class_path: pytorch_lightning.callbacks.ModelCheckpoint\n"
            "      init_args: {filename: '{step}', save_last: true, save_top_k: 1, monitor: step, mode: max, "
            f"every_n_train_steps: {int(every)}}}\n")


def read_scalars(run: Path, tags: tuple[str, ...] = LOSS_TAGS) -> dict[str, list[list[float]]]:
    """The scalar curves ``tags`` of every TensorBoard event file under ``run`` (or of the one file ``run``):
    ``{tag: [[step, value], ...]}`` (sorted by step, a step logged twice keeps its last value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, dict[int, float]] = {}
    run = Path(run)
    files = [run] if run.is_file() else sorted(run.rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    for events in files:
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        try:
            acc.Reload()
        except Exception as err:  # a file being written may end in a partial record: read it next time
            LOG.debug("%s: %s", events, err)
            continue
        for tag in set(acc.Tags().get("scalars", [])) & set(tags):
            for e in acc.Scalars(tag):
                curves.setdefault(tag, {})[int(e.step)] = float(e.value)
    return {tag: [[s, v] for s, v in sorted(c.items())] for tag, c in curves.items()}
