"""Print a config shipped with svc_pl (to edit and pass back with ``--config my.yaml``), or list them.

    svc-pl config              # the names, with each config's first comment line
    svc-pl config tiny > my.yaml
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="config name (omit to list them)")


def run(args: argparse.Namespace) -> int:
    from svc_pl.configs import shipped_configs
    from svc_pl.errors import UserFacingError

    configs = shipped_configs()
    if not args.name:
        for name, path in configs.items():
            first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
            print(f"{name:<10} {first}")
        return 0
    if args.name not in configs:
        raise UserFacingError(f"no shipped config named {args.name!r}; choose one of {', '.join(configs)}")
    sys.stdout.write(configs[args.name].read_text())
    return 0
