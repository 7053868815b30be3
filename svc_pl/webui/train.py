"""What the web UI's Train tab does, without Gradio: preprocess a dataset folder and train on it as ``svc-pl``
processes of their own (a closed browser or a reloaded page loses nothing), stop them, resume with
``--ckpt_path last``, read the progress and losses from the run's TensorBoard events (Lightning flushes them at
every logging step), turn uploaded recordings into the dataset folder ``svc-pl preprocess`` reads, and export a run
as ``svc-pl export`` does."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
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
_SPEAKER = re.compile(r"[^\W_][\w.-]{0,63}")  # a folder name: letters (any script), digits, '.', '_', '-'


@dataclass
class TrainRequest:
    """One training run: ``dataset`` is either a folder of ``<speaker>/*.wav`` (preprocessed first into
    ``RUN/data``) or a preprocessed dataset (with ``dataset.json``); or, with no ``dataset``, ``uploads`` gives
    ``[(speaker, [files])]``, copied into ``RUN/raw/<speaker>/`` first."""

    dataset: str | None
    name: str
    config: str = "tiny"
    init_from: str | None = "tiny-base"
    max_steps: int = 400
    checkpoint_every: int = 100
    log_every: int = 10
    f0_method: str = "pm"
    uploads: list[tuple[str, list[str]]] | None = None


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
            uploads = [(n, f) for n, f in req.uploads or [] if (n or "").strip() or f]
            if not resume and uploads:
                if data is not None:
                    raise UserFacingError("give either a dataset folder or uploaded recordings, not both")
                data = write_uploaded_dataset(uploads, run / "raw")
                req = dataclasses.replace(req, dataset=str(data), uploads=None)
            if not resume:
                if data is None:
                    raise UserFacingError("give a dataset folder, or upload recordings (one group per speaker)")
                if not data.is_dir():
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

    def export(self, name: str) -> list[Path]:
        """:func:`export_run` of the run ``name`` (the newest checkpoint; a running run goes on training)."""
        if not _RUN_NAME.fullmatch(name or ""):
            raise UserFacingError(f"run name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
        run = self.runs / name
        if not run.is_dir():
            raise UserFacingError(f"no run {name!r} under {self.runs}")
        return export_run(run)

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


def write_uploaded_dataset(groups: list[tuple[str, list[str]]], dest: Path) -> Path:
    """Copy uploaded recordings into ``dest/<speaker>/<file>`` (the layout ``svc-pl preprocess`` reads), one group
    per speaker; returns ``dest``. Groups without a name and without files are skipped.

    Raises:
        UserFacingError: a group without files or without a valid name, a name given twice, a file that is not
            audio; nothing is written then.
    """
    from svc_pl.data.audio import AUDIO_EXTENSIONS

    named: dict[str, list[Path]] = {}
    for name, files in groups:
        name, files = (name or "").strip(), [Path(f) for f in files or [] if f]
        if not name and not files:
            continue
        if not files:
            raise UserFacingError(f"speaker {name!r}: upload at least one recording for it")
        if not _SPEAKER.fullmatch(name):
            raise UserFacingError(f"speaker name {name!r}: use letters, digits, '.', '_' or '-' (at most 64; it "
                                  "names the speaker in the model)")
        if name in named:
            raise UserFacingError(f"speaker {name!r} is given twice: put all its recordings in one group")
        for f in files:
            if f.suffix.lower() not in AUDIO_EXTENSIONS:
                raise UserFacingError(f"{f.name} (speaker {name!r}): not an audio file this tool reads (one of "
                                      f"{', '.join(sorted(AUDIO_EXTENSIONS))})")
            _check_audio(f)
        named[name] = files
    if not named:
        raise UserFacingError("no recordings: give a dataset folder, or a speaker name and its recordings")
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)  # the uploads of an earlier start of this run: replaced, never mixed in
    for name, files in named.items():
        taken: set[str] = set()
        (dest / name).mkdir(parents=True)
        for f in files:
            stem, k = re.sub(r"[^\w.-]", "_", f.stem) or "clip", 1
            target = f"{stem}{f.suffix.lower()}"
            while target in taken:
                k += 1
                target = f"{stem}-{k}{f.suffix.lower()}"
            taken.add(target)
            shutil.copyfile(f, dest / name / target)
    return dest


def _check_audio(f: Path) -> None:
    import soundfile as sf

    if not f.is_file() or f.stat().st_size == 0:
        raise UserFacingError(f"{f.name}: the file is empty")
    try:
        info = sf.info(str(f))
    except Exception as err:  # soundfile raises RuntimeError/LibsndfileError/TypeError for foreign bytes
        if f.suffix.lower() in (".mp3", ".opus"):
            return  # formats libsndfile may not read: preprocess decodes them (and reports a bad one)
        raise UserFacingError(f"{f.name}: cannot be read as audio ({err})") from None
    if info.frames == 0:
        raise UserFacingError(f"{f.name}: the recording is empty (0 samples)")


def export_run(run: Path, out: Path | None = None) -> list[Path]:
    """``svc-pl export`` of the newest ``last.ckpt`` of ``run`` into ``out`` (default ``run/export``), as its own
    process: the so-vits-svc ``G_<step>.pth``, ``D_<step>.pth`` and ``config.json``; returns the files written.

    Raises:
        UserFacingError: no checkpoint yet, or the export failed (its message).
    """
    run = Path(run)
    ckpts = sorted(run.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise UserFacingError(f"{run}: no checkpoint to export yet (train until the first checkpoint is written)")
    out = Path(out) if out else run / "export"
    if out.exists():
        shutil.rmtree(out)  # one export per run: the newest
    proc = subprocess.run([*_svc_pl(), "export", str(ckpts[-1]), "-o", str(out)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = [x for x in (proc.stderr or proc.stdout).splitlines() if x.strip()]
        raise UserFacingError(f"export of {ckpts[-1]} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return sorted(p for p in out.iterdir() if p.is_file())


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
