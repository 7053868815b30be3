"""Training through LightningCLI: ``svc-pl fit --config configs/tiny.yaml --data.dataset_dir DIR``."""

from __future__ import annotations

import sys


def run_lightning(argv: list[str]) -> int:
    """Hand ``fit``/``validate`` and everything after it to LightningCLI."""
    from svc_pl.errors import UserFacingError
    from svc_pl.lightning.cli import main

    try:
        main(argv)
    except UserFacingError as err:
        print(f"svc-pl {argv[0]}: error: {err}", file=sys.stderr)
        return 2
    return 0
