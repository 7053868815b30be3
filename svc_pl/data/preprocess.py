"""``dataset_raw/<speaker>/*`` -> a preprocessed dataset (see :mod:`svc_pl.data.layout`).

Per source file (in worker processes): read any soundfile format, mono, one resample to the target
rate, loudness-normalise, split at silences (the seed's slicer) into clips of bounded length, then per
clip F0 + voiced flag and volume at the hop, and speaker-perturbed copies when asked. Content units: in the
workers on a CPU (one encoder each), else in the main process (one encoder on the chosen device). The main
process writes each feature bundle atomically. A per-file manifest written last makes re-runs
skip finished files. Bad files are reported with a reason and skipped; nothing stops the run.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svc_pl.data.audio import AUDIO_EXTENSIONS, frame_volume
from svc_pl.data.layout import DatasetInfo, save_bundle, write_filelist
from svc_pl.errors import UserFacingError
from svc_pl.io import write_json_atomic

LOG = logging.getLogger(__name__)


@dataclass
class PreprocessOptions:
    sampling_rate: int = 44100
    hop_length: int = 512
    filter_length: int = 2048
    win_length: int = 2048
    encoder: str = "vec768l12"
    content_encoder_path: str | None = None
    random_encoder: bool = False  # demo only: fixed random weights
    f0_method: str = "pm"
    f0_model_path: str | None = None
    workers: int = 1
    device: str = "cpu"
    val_per_speaker: int = 2
    slice_db: float = -40.0
    min_clip_seconds: float = 0.5
    max_clip_seconds: float = 15.0
    unit_interpolate_mode: str = "nearest"
    cache_spec: bool = False
    unit_window: str = "auto"  # "auto" (on for whisper-tiny.en, the base's units), "off", "on" or "W,C,L" frames
    perturb_copies: int = -1  # speaker-perturbed unit copies per clip; -1: 2 for whisper-tiny.en, else 0
    seed: int = 0  # of the perturbations (each clip's own generator: re-runs give the same copies)

    def resolved_unit_window(self):
        """The :class:`~svc_pl.data.unit_window.UnitWindow` units are made with, or None (whole clips)."""
        from svc_pl.data.unit_window import UnitWindow

        if self.unit_window == "auto":
            return UnitWindow() if self.content_encoder_path == "whisper-tiny.en" else None
        return UnitWindow.parse(self.unit_window)

    def resolved_perturb_copies(self) -> int:
        if self.perturb_copies >= 0:
            return self.perturb_copies
        return 2 if self.content_encoder_path == "whisper-tiny.en" else 0


@dataclass
class Clip:
    name: str  # relative path of the bundle, without extension
    audio: np.ndarray
    f0: np.ndarray
    voiced: np.ndarray
    volume: np.ndarray
    perturbed: list[np.ndarray] = field(default_factory=list)  # speaker-perturbed copies of ``audio``
    units: torch.Tensor | None = None  # (D, N) float16, when the worker computed them
    units_perturbed: torch.Tensor | None = None  # (K, D, N) float16


@dataclass
class FileResult:
    source: str
    speaker: str
    clips: list[Clip] = field(default_factory=list)
    problem: str | None = None
    skipped_clips: int = 0


def split_long(start: int, end: int, max_len: int) -> Iterator[tuple[int, int]]:
    """Split [start, end) into near-equal pieces no longer than max_len."""
    n = max(1, -(-(end - start) // max_len))
    edges = np.linspace(start, end, n + 1).round().astype(int)
    yield from zip(edges[:-1], edges[1:])


_WORKER: dict[str, Any] = {}


def _worker_init(opts: PreprocessOptions) -> None:
    torch.set_num_threads(1)
    from svc_pl.data.pitch import get_f0_extractor

    _WORKER["opts"] = opts
    _WORKER["f0"] = get_f0_extractor(opts.f0_method, sample_rate=opts.sampling_rate, hop_length=opts.hop_length,
                                     device="cpu", model_path=opts.f0_model_path)
    _WORKER["units"] = UnitComputer(opts) if _units_in_workers(opts) else None


class WorkerStartError(RuntimeError):
    """A worker process could not set itself up (its F0 tracker or content encoder failed to load)."""


def _start_worker(opts: PreprocessOptions) -> None:
    """The pool's initializer: a failure is kept and raised by the worker's first job. (An exception escaping a
    ``multiprocessing.Pool`` initializer kills the worker, the pool starts another, which fails the same way:
    the run would hang without a word.)"""
    try:
        _worker_init(opts)
    except Exception as exc:  # noqa: BLE001 - reported, with its type, by process_file
        _WORKER["start_error"] = f"{type(exc).__name__}: {exc}"


def _units_in_workers(opts: PreprocessOptions) -> bool:
    """On a CPU with several workers each worker encodes its own clips (one thread each); on a GPU one
    encoder in the main process does."""
    return opts.workers > 1 and str(opts.device) == "cpu"


def process_file(job: tuple[str, str, str]) -> FileResult:
    """Load, check, slice one source file and compute its clips' F0 and volume (runs in a worker)."""
    from svc_pl.data.audio import check_audio, load_audio, normalize_loudness
    from svc_pl.data.slicer import Slicer

    if "start_error" in _WORKER:
        raise WorkerStartError(_WORKER["start_error"])
    source, speaker, stem = job
    opts: PreprocessOptions = _WORKER["opts"]
    result = FileResult(source, speaker)
    try:
        y, sr = load_audio(source, target_sr=opts.sampling_rate)
        check_audio(y, sr, source, min_seconds=opts.min_clip_seconds)
        y = normalize_loudness(y)
        hop = opts.hop_length
        chunks = Slicer(sr, threshold=opts.slice_db, min_length=5000, min_interval=300, hop_size=20,
                        max_sil_kept=500).slice(y)
        pieces = [p for c in chunks if not c.silent
                  for p in split_long(c.start, c.end, int(opts.max_clip_seconds * sr))]
        for k, (a, b) in enumerate(pieces):
            n = (b - a) // hop
            if n * hop < opts.min_clip_seconds * sr or np.abs(y[a:b]).max() < 1e-3:
                result.skipped_clips += 1
                continue
            audio = y[a:a + n * hop]
            track = _WORKER["f0"].compute(audio, n_frames=n)
            name = f"{speaker}/{stem}_{k}"
            result.clips.append(Clip(name, audio, track.f0.astype(np.float32), track.voiced.astype(np.float32),
                                     frame_volume(audio, hop, n), _perturbed_copies(name, audio, track, opts)))
        units = _WORKER.get("units")
        if units is not None:
            for clip in result.clips:
                n = len(clip.f0)
                clip.units = units(clip.audio, n).to(torch.float16)
                if clip.perturbed:
                    clip.units_perturbed = torch.stack([units(a, n) for a in clip.perturbed]).to(torch.float16)
                    clip.perturbed = []
        if not result.clips:
            result.problem = "no usable clip (all silent or shorter than --min-clip-seconds after slicing)"
    except UserFacingError as err:
        result.problem = str(err).replace(f"{source}: ", "")
    except Exception as err:  # a single bad file must never stop a run over thousands
        result.problem = f"unexpected {type(err).__name__}: {err}"
    return result


def _perturbed_copies(name: str, audio: np.ndarray, track, opts: PreprocessOptions) -> list[np.ndarray]:
    """``opts.resolved_perturb_copies()`` speaker-perturbed copies of a clip, from its own seeded generator."""
    import zlib

    from svc_pl.data.perturb import perturb

    copies = opts.resolved_perturb_copies()
    if copies <= 0:
        return []
    rng = np.random.default_rng([opts.seed, zlib.crc32(name.encode("utf-8"))])
    voiced = track.f0[track.voiced > 0.5]
    median = float(np.median(voiced)) if len(voiced) else None
    return [perturb(audio, opts.sampling_rate, rng, median) for _ in range(copies)]


class UnitComputer:
    """Content units for clips at the dataset rate, with one model on one device."""

    def __init__(self, opts: PreprocessOptions):
        from svc_pl.data.content import load_content_encoder, random_content_encoder

        self.opts = opts
        if opts.random_encoder:
            self.encoder = random_content_encoder(opts.encoder)
        else:
            self.encoder = load_content_encoder(opts.encoder, opts.content_encoder_path, device=opts.device)
        self.encoder = self.encoder.to(opts.device).eval()
        window = opts.resolved_unit_window()
        if window is not None:
            from svc_pl.data.unit_window import WindowedEncoder

            self.encoder = WindowedEncoder(self.encoder, window)
        self.dim = int(self.encoder.dim)

    @torch.inference_mode()
    def __call__(self, audio: np.ndarray, n_frames: int) -> torch.Tensor:
        from svc_pl.data.audio import resample
        from svc_pl.data.content import units_to_frames

        wav16 = torch.from_numpy(resample(audio, self.opts.sampling_rate, 16000)).to(self.opts.device)
        units = self.encoder(wav16.unsqueeze(0))
        return units_to_frames(units.float(), n_frames, mode=self.opts.unit_interpolate_mode)[0].cpu()


def scan_sources(input_dir: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    if not input_dir.is_dir():
        raise UserFacingError(f"{input_dir}: input folder not found (expected dataset_raw/<speaker>/*.wav)")
    speakers = sorted(p.name for p in input_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not speakers:
        raise UserFacingError(f"{input_dir}: no speaker sub-folders (expected {input_dir}/<speaker>/*.wav)")
    jobs = []
    for spk in speakers:
        for f in sorted((input_dir / spk).rglob("*")):
            if f.is_file() and (f.suffix.lower() in AUDIO_EXTENSIONS or not f.suffix):
                rel = f.relative_to(input_dir / spk).with_suffix("")
                stem = "__".join(rel.parts)
                jobs.append((str(f), spk, stem))
    return speakers, jobs


def _manifest_path(out: Path, speaker: str, stem: str) -> Path:
    return out / ".done" / speaker / f"{stem}.json"


def preprocess(input_dir: str | os.PathLike, output_dir: str | os.PathLike, opts: PreprocessOptions,
               progress: bool = True) -> dict[str, Any]:
    """Run the whole preprocessing; returns the report (also written to OUTPUT_DIR/report.json)."""
    input_dir, out = Path(input_dir), Path(output_dir)
    speakers, jobs = scan_sources(input_dir)
    _check_resumable(out, opts)
    out.mkdir(parents=True, exist_ok=True)
    todo, done_clips = [], {}
    for job in jobs:
        man = _manifest_path(out, job[1], job[2])
        if man.is_file():
            info = json.loads(man.read_text())
            if all((out / f"{c}.pt").is_file() for c in info["clips"]):
                done_clips.update({c: n for c, n in zip(info["clips"], info["frames"])})
                continue
        todo.append(job)
    LOG.info("%d source files (%d already done), %d speakers", len(jobs), len(jobs) - len(todo), len(speakers))
    problems: list[dict[str, str]] = []
    units = UnitComputer(opts) if todo and not _units_in_workers(opts) else None
    unit_dim = units.dim if units else None
    spec = None
    if opts.cache_spec:
        from svc_pl.data.spectral import LinearSpectrogram

        spec = LinearSpectrogram(opts.filter_length, opts.hop_length, opts.win_length)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="preprocess", unit="file")
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(opts.workers, initializer=_start_worker, initargs=(opts,)) if opts.workers > 1 and todo else None
    try:
        if pool is None and todo:
            _worker_init(opts)
        results = pool.imap_unordered(process_file, todo) if pool else map(process_file, todo)
        for res in results:
            if res.problem:
                problems.append({"file": res.source, "speaker": res.speaker, "problem": res.problem})
                LOG.warning("skipped %s: %s", res.source, res.problem)
            names, frames = [], []
            for clip in res.clips:
                n = len(clip.f0)
                if clip.units is None:
                    clip.units = units(clip.audio, n).to(torch.float16)
                    if clip.perturbed:
                        clip.units_perturbed = torch.stack([units(a, n) for a in clip.perturbed]).to(torch.float16)
                unit_dim = int(clip.units.shape[0])
                bundle = {"audio": torch.from_numpy(np.round(np.clip(clip.audio, -1, 1) * 32767).astype(np.int16)),
                          "units": clip.units, "f0": torch.from_numpy(clip.f0),
                          "voiced": torch.from_numpy(clip.voiced), "volume": torch.from_numpy(clip.volume)}
                if clip.units_perturbed is not None:
                    bundle["units_perturbed"] = clip.units_perturbed
                if spec is not None:
                    bundle["spec"] = spec(torch.from_numpy(clip.audio).unsqueeze(0))[0].to(torch.float16)
                save_bundle(out / f"{clip.name}.pt", bundle)
                names.append(clip.name)
                frames.append(n)
            if res.clips:
                stem = Path(res.clips[0].name).name.rsplit("_", 1)[0]
                write_json_atomic(_manifest_path(out, res.speaker, stem), {"source": res.source, "clips": names,
                                                                           "frames": frames})
                done_clips.update(dict(zip(names, frames)))
            if bar is not None:
                bar.update(1)
    except WorkerStartError as exc:
        pool.terminate()
        raise UserFacingError(f"{input_dir}: the preprocessing workers could not start ({exc}); fix that (a missing "
                              "package: install it), or run with --workers 1 to see the whole traceback") from None
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            bar.close()
    return _finish(out, speakers, done_clips, problems, opts, unit_dim, len(jobs))


def _settings(opts: PreprocessOptions) -> dict[str, Any]:
    """What a dataset's features depend on beyond the audio: re-running into a folder needs the same."""
    window = opts.resolved_unit_window()
    return {"content_encoder": opts.encoder, "sampling_rate": opts.sampling_rate, "hop_length": opts.hop_length,
            "unit_window": window.to_dict() if window else {}, "perturb_copies": opts.resolved_perturb_copies()}


def _check_resumable(out: Path, opts: PreprocessOptions) -> None:
    if not (out / "dataset.json").is_file():
        return
    info = DatasetInfo.load(out)
    old = {"content_encoder": info.content_encoder, "sampling_rate": info.sampling_rate,
           "hop_length": info.hop_length, "unit_window": info.unit_window,
           "perturb_copies": int(info.extra.get("perturb_copies", 0))}
    new = _settings(opts)
    diff = {k: (old[k], new[k]) for k in new if old[k] != new[k]}
    if diff:
        said = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
        raise UserFacingError(f"{out}: already holds a dataset preprocessed with other settings ({said}); "
                              "write to a new folder, or delete this one, so its clips do not mix")


def _stored_unit_dim(path: Path) -> int | None:
    from svc_pl.data.layout import load_bundle

    try:
        return int(load_bundle(path)["units"].shape[0])
    except Exception:  # noqa: BLE001 - unreadable: fall back to the encoder's nominal dimension
        return None


def _finish(out: Path, speakers: list[str], clips: dict[str, int], problems: list[dict[str, str]],
            opts: PreprocessOptions, unit_dim: int | None, n_files: int) -> dict[str, Any]:
    from svc_pl.data.content import ENCODERS

    by_speaker: dict[str, list[str]] = {s: [] for s in speakers}
    for name in sorted(clips):
        by_speaker.setdefault(name.split("/")[0], []).append(name)
    train, val = [], []
    for spk, names in by_speaker.items():
        if not names:
            continue
        n_val = min(opts.val_per_speaker, max(0, len(names) - 1))
        step = len(names) / max(n_val, 1)
        val_idx = {int(i * step) for i in range(n_val)}
        for i, name in enumerate(names):
            (val if i in val_idx else train).append(f"{name}.pt")
    used = [s for s in speakers if by_speaker.get(s)]
    if unit_dim is None and clips:  # nothing was encoded in this run: the dimension the files already have
        unit_dim = _stored_unit_dim(out / f"{next(iter(sorted(clips)))}.pt")
    info = DatasetInfo(speakers={s: i for i, s in enumerate(used)}, sampling_rate=opts.sampling_rate,
                       hop_length=opts.hop_length, filter_length=opts.filter_length, win_length=opts.win_length,
                       content_encoder=opts.encoder, unit_dim=unit_dim or ENCODERS[opts.encoder],
                       f0_method=opts.f0_method, unit_interpolate_mode=opts.unit_interpolate_mode,
                       unit_window=_settings(opts)["unit_window"],
                       extra={"frames": {f"{k}.pt": v for k, v in clips.items()},
                              "random_encoder": bool(opts.random_encoder),
                              "perturb_copies": opts.resolved_perturb_copies(), "perturb_seed": opts.seed})
    if train:
        write_filelist(out / "train.txt", train)
        write_filelist(out / "val.txt", val or train[:1])
        info.save(out)
    report = {"files": n_files, "clips": len(clips), "train": len(train), "val": len(val), "speakers": info.speakers,
              "seconds": round(sum(clips.values()) * opts.hop_length / opts.sampling_rate, 2), "problems": problems}
    write_json_atomic(out / "report.json", report)
    lines = [f"{p['file']}: {p['problem']}" for p in problems]
    (out / "report.txt").write_text("".join(f"{line}\n" for line in lines) or "no problems\n", encoding="utf-8")
    return report
