"""Many files through one converter: input discovery (files and folders, tree mirrored), per-file
conversion with errors collected instead of raised, and atomic output writing."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from svc_pl.data.audio import AUDIO_EXTENSIONS, FORMATS
from svc_pl.errors import UserFacingError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    source: str
    target: str


def collect_jobs(inputs: list[str], output_dir: str | os.PathLike, fmt: str | None = None) -> list[Job]:
    """Files map to OUTPUT_DIR/<name>; a folder maps to OUTPUT_DIR/<folder name>/<its tree>.
    The output format is ``fmt`` (wav/flac/ogg), else the input's extension when writable, else wav."""
    out = Path(output_dir)
    jobs: list[Job] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            if not files:
                LOG.warning("%s: no audio files found in this folder", p)
            pairs = [(f, out / p.resolve().name / f.relative_to(p)) for f in files]
        else:
            pairs = [(p, out / p.name)]
        for src, dst in pairs:
            ext = f".{fmt.lstrip('.')}" if fmt else (src.suffix.lower() if src.suffix.lower() in FORMATS else ".wav")
            jobs.append(Job(str(src), str(dst.with_suffix(ext))))
    seen: dict[str, str] = {}
    for j in jobs:
        if j.target in seen:
            raise UserFacingError(f"{j.source} and {seen[j.target]} would both be written to {j.target}")
        seen[j.target] = j.source
    return jobs


def convert_file(converter, job: Job, opts) -> None:
    """Read, convert and write one file (atomically). Raises UserFacingError naming the file on bad input."""
    from svc_pl.data.audio import AudioWriter, check_audio, load_audio

    audio, sr = load_audio(job.source)
    check_audio(audio, sr, job.source, min_seconds=0.0, silence_db=-1e9)  # silence converts to silence
    Path(job.target).parent.mkdir(parents=True, exist_ok=True)
    # written as it is converted (never the whole output in memory), atomically: no partial file
    with AudioWriter(job.target, converter.model.sampling_rate) as writer:
        for block in converter.iter_convert(audio, sr, opts):
            writer.write(block)
