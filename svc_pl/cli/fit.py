"""Training through LightningCLI: ``svc-pl fit --config tiny --data.dataset_dir DIR``.

``--config`` takes a path or the name of a config shipped in ``svc_pl/configs`` (``tiny``, ``tiny-nsf``,
``44k``, ``44k-tiny``, ...). A config may start from another with a ``config:`` key (jsonargparse reads that file
first): ``44k-tiny.yaml`` is ``44k.yaml`` plus the lines that differ. Each shipped config says in its header how to
preprocess data for it (``# Preprocess for it with: svc-pl preprocess IN OUT ...``); when a dataset's hop does not
fit a config's decoder, the error quotes that line and names the shipped configs that fit.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def shipped_configs() -> dict[str, Path]:
    """Config name -> its YAML inside the package."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def resolve_config_args(argv: list[str]) -> list[str]:
    """Replace ``--config NAME`` (and ``--config=NAME``) by the shipped config's path when NAME is not a file."""
    configs = shipped_configs()

    def resolve(value: str) -> str:
        if Path(value).exists() or value not in configs:
            return value
        return str(configs[value])

    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c") and i + 1 < len(argv):
            out += [arg, resolve(argv[i + 1])]
            i += 2
            continue
        if arg.startswith("--config="):
            arg = "--config=" + resolve(arg.split("=", 1)[1])
        out.append(arg)
        i += 1
    return out


_PREPROCESS = "# Preprocess for it with:"


def preprocess_command(path: Path) -> str:
    """The ``svc-pl preprocess`` command a config's header gives for its data (default flags if it gives none)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith(_PREPROCESS):
            parts = [line[len(_PREPROCESS):]]
            while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                parts[-1] = parts[-1].rstrip()[:-1]
                parts.append(lines[i].lstrip("#"))
            return " ".join(" ".join(parts).split())
    return "svc-pl preprocess IN OUT"


def _hop(command: str) -> int:
    match = re.search(r"--hop-length[ =](\d+)", command)
    return int(match.group(1)) if match else 512  # svc-pl preprocess's default


def _config_names(argv: list[str]) -> list[str]:
    """The shipped configs named (or given by their path) with ``--config``."""
    configs = {p.resolve(): name for name, p in shipped_configs().items()}
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config", "-c")]
    values += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    return [configs[Path(v).resolve()] for v in values if Path(v).resolve() in configs]


def hop_mismatch_advice(hop_length: int, argv: list[str]) -> str:
    """How to get data for the config given, and which shipped configs fit data with ``hop_length``."""
    configs = shipped_configs()
    lines = [f"  {name} is made for data from: {preprocess_command(configs[name])}" for name in _config_names(argv)]
    fits = [name for name, path in configs.items() if _hop(preprocess_command(path)) == hop_length]
    if fits:
        lines.append(f"  shipped configs for hop {hop_length}: " + ", ".join(f"--config {n}" for n in fits))
    return "\n".join(lines)


def run_lightning(argv: list[str]) -> int:
    """Hand ``fit``/``validate`` and everything after it to LightningCLI."""
    from svc_pl.errors import UserFacingError
    from svc_pl.lightning.cli import main
    from svc_pl.synthesizer import DecoderHopMismatchError

    argv = resolve_config_args(argv)
    try:
        main(argv)
    except UserFacingError as err:
        message = str(err)
        if isinstance(err, DecoderHopMismatchError):
            message = "\n".join(filter(None, [message, hop_mismatch_advice(err.hop_length, argv)]))
        print(f"svc-pl {argv[0]}: error: {message}", file=sys.stderr)
        return 2
    return 0
