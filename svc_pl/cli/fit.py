"""Training through LightningCLI: ``svc-pl fit --config tiny --data.dataset_dir DIR``.

``--config`` takes a path or the name of a config shipped in ``svc_pl/configs`` (``tiny``, ``tiny-nsf``,
``44k``, ``44k-tiny``, ...).
"""

from __future__ import annotations

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


def run_lightning(argv: list[str]) -> int:
    """Hand ``fit``/``validate`` and everything after it to LightningCLI."""
    from svc_pl.errors import UserFacingError
    from svc_pl.lightning.cli import main

    try:
        main(resolve_config_args(argv))
    except UserFacingError as err:
        print(f"svc-pl {argv[0]}: error: {err}", file=sys.stderr)
        return 2
    return 0
