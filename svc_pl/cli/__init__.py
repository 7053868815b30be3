"""The ``svc-pl`` command.

Every sub-command lives in its own module of this package and exposes two functions:
``add_arguments(parser)`` (imports nothing heavy, so ``svc-pl --help`` is instant) and
``run(args) -> int`` (imports what it needs lazily). ``fit``/``validate`` hand the rest of the
command line to LightningCLI.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("svc_pl.cli.preprocess", "turn dataset_raw/<speaker>/*.wav into training features"),
    "fit": ("svc_pl.cli.fit", "train or fine-tune with LightningCLI (svc-pl fit --help)"),
    "validate": ("svc_pl.cli.fit", "run validation of a checkpoint with LightningCLI"),
    "infer": ("svc_pl.cli.infer", "convert files or folders to a target voice"),
    "train-index": ("svc_pl.cli.train_index", "build a k-means cluster model and a feature index"),
    "export": ("svc_pl.cli.export", "export a trained model to so-vits-svc G_*.pth/D_*.pth + config.json"),
    "export-onnx": ("svc_pl.cli.export_onnx", "export the synthesizer to ONNX"),
    "evaluate": ("svc_pl.cli.evaluate", "score a conversion (F0 agreement, speaker similarity)"),
    "config": ("svc_pl.cli.config", "print a shipped training config (svc-pl config tiny > my.yaml), or list them"),
    "demo": ("svc_pl.cli.demo", "build data, train, convert and evaluate end to end on CPU"),
}

LIGHTNING_COMMANDS = {"fit", "validate"}


def _available_commands() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        try:
            importlib.util.find_spec(module)
        except ModuleNotFoundError:
            continue
        if importlib.util.find_spec(module) is not None:
            found[name] = (module, help_text)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svc-pl",
        description="svc_pl: singing voice conversion (so-vits-svc 4.1 compatible) on PyTorch Lightning.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available_commands().items():
        if name in LIGHTNING_COMMANDS:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip())
        mod.add_arguments(p)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=min(level, logging.INFO), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("svc_pl").setLevel(logging.INFO if verbosity <= 1 else logging.DEBUG)
    for noisy in ("numba", "matplotlib", "fsspec", "urllib3", "faiss", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        _setup_logging(0)
        from svc_pl.cli.fit import run_lightning

        return run_lightning(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    _setup_logging(args.verbose)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserFacingError as err:
        print(f"svc-pl {args.command}: error: {err}", file=sys.stderr)
        return 2


from svc_pl.errors import UserFacingError  # noqa: E402  (tiny module, no heavy imports)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
