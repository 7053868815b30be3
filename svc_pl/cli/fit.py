"""Training through LightningCLI: ``svc-pl fit --config tiny --data.dataset_dir DIR``.

``--config`` takes a path or the name of a config shipped in ``svc_pl/configs`` (``tiny``, ``tiny-nsf``,
``44k``, ``44k-tiny``, ...), read by the conventions of :mod:`svc_pl.configs` (``# Extends: NAME``,
``# Preprocess for it with: ...``, ``model.class_path``). When a dataset's hop does not fit a config's decoder, the
error quotes the config's preprocessing line and names the shipped configs that fit.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from svc_pl.configs import preprocess_command, resolve_config_args, shipped_configs


def _hop(command: str) -> int:
    match = re.search(r"--hop-length[ =](\d+)", command)
    return int(match.group(1)) if match else 512  # svc-pl preprocess's default


def _config_names(argv: list[str]) -> list[str]:
    """The shipped configs given (by their path, as :func:`resolve_config_args` leaves them) with ``--config``."""
    configs = {p.resolve(): name for name, p in shipped_configs().items()}
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config", "-c")]
    values += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    return [configs[Path(v).resolve()] for v in values if Path(v).resolve() in configs]


def _is_synthesizer(path: Path) -> bool:
    """Whether a config trains the synthesizer (it has a ``model.net`` block), not another model."""
    import yaml

    model = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model") or {}
    return isinstance(model, dict) and "net" in model


def hop_mismatch_advice(hop_length: int, argv: list[str]) -> str:
    """How to get data for the configs given, and which shipped configs are made for data with ``hop_length``."""
    commands = {name: preprocess_command(path) for name, path in shipped_configs().items() if _is_synthesizer(path)}
    lines = [f"  {name} is made for data from: {commands[name]}" for name in _config_names(argv)
             if commands.get(name)]
    fits = [name for name, command in commands.items() if command and _hop(command) == hop_length]
    if fits:
        lines.append(f"  shipped configs for hop {hop_length}: " + ", ".join(f"--config {n}" for n in fits))
    return "\n".join(lines)


def run_lightning(argv: list[str]) -> int:
    """Hand ``fit``/``validate`` and everything after it to LightningCLI."""
    from svc_pl.errors import UserFacingError
    from svc_pl.lightning.cli import main
    from svc_pl.synthesizer import DecoderHopMismatchError

    try:
        argv = resolve_config_args(argv)
        main(argv)
    except UserFacingError as err:
        message = str(err)
        if isinstance(err, DecoderHopMismatchError):
            message = "\n".join(filter(None, [message, hop_mismatch_advice(err.hop_length, argv)]))
        print(f"svc-pl {argv[0]}: error: {message}", file=sys.stderr)
        return 2
    return 0
