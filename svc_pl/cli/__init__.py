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
import re
import sys
import warnings

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("svc_pl.cli.preprocess", "turn dataset_raw/<speaker>/*.wav into training features"),
    "fit": ("svc_pl.cli.fit", "train or fine-tune with LightningCLI (svc-pl fit --help)"),
    "validate": ("svc_pl.cli.fit", "run validation of a checkpoint with LightningCLI"),
    "infer": ("svc_pl.cli.infer", "convert files or folders to a target voice"),
    "live": ("svc_pl.cli.live", "convert a microphone (or a file, block by block) live, with measured latency"),
    "train-index": ("svc_pl.cli.train_index", "build a k-means cluster model and a feature index"),
    "export": ("svc_pl.cli.export", "export a trained model to so-vits-svc G_*.pth/D_*.pth + config.json"),
    "export-onnx": ("svc_pl.cli.export_onnx", "export the synthesizer to ONNX"),
    "evaluate": ("svc_pl.cli.evaluate", "score a conversion (F0 agreement, speaker similarity)"),
    "config": ("svc_pl.cli.config", "print a shipped training config (svc-pl config tiny > my.yaml), or list them"),
    "demo": ("svc_pl.cli.demo", "build data, train, convert and evaluate end to end on CPU"),
    "webui": ("svc_pl.cli.webui", "convert, compare and train in a browser (svc_pl[webui])"),
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
    # Lightning's start-up lines (seed, GPU/TPU available) at -v only; its other lines (resumed from, stopped
    # at) always. (Lightning sets its top-level loggers to INFO when imported: levels go on the modules.)
    logging.getLogger("lightning_fabric.utilities.seed").setLevel(logging.WARNING if verbosity <= 0 else level)
    _LIGHTNING_NOISE.verbosity = verbosity
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_LIGHTNING_NOISE)


class _LightningNoiseFilter(logging.Filter):
    """Drops Lightning's advertisement always, and its hardware inventory unless -v."""

    verbosity = 0
    _HARDWARE = re.compile(r"(GPU|TPU|HPU|IPU) available")

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if "litlogger" in text:  # a tip printed at every Trainer start
            return False
        return self.verbosity > 0 or not self._HARDWARE.match(text)


_LIGHTNING_NOISE = _LightningNoiseFilter()


# Warnings from dependencies that say nothing a user of svc-pl can act on: (message regex, module regex).
KNOWN_NOISE: tuple[tuple[str, str], ...] = (
    # svc-pl fit hands its own arguments to LightningCLI(args=...), which it warns about when sys.argv has some
    (r"LightningCLI's args parameter is intended to run from within Python", r"pytorch_lightning\.cli"),
    # Lightning's own use of torch.utils._pytree
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"pytorch_lightning\..*"),
    # Lightning's use of jsonargparse APIs that jsonargparse has deprecated
    (r"\s*(\S.* was deprecated in v4\.|By default only one JsonargparseDeprecationWarning)",
     r"pytorch_lightning\..*"),
    # svc_pl logs per step and Lightning counts those steps across epochs, so a dataset with fewer batches per
    # epoch than log_every_n_steps is logged all the same (the warning is about per-epoch aggregates)
    (r"The number of training batches \(\d+\) is smaller than the logging interval", r"pytorch_lightning\..*"),
    # pyworld imports pkg_resources at import time
    (r"pkg_resources is deprecated as an API", r"pyworld.*|pkg_resources.*"),
    # ModelCheckpoint(every_n_train_steps) under manual optimization: Lightning would save a state from before the
    # optimizer step if the module kept one in ``saved_models``; svc_pl saves the state after the step, which is
    # the state ``global_step`` counts and the one a resume must continue from (tests/test_training.py checks
    # that a resumed run equals an uninterrupted one).
    (r"Using ModelCheckpoint with manual optimization and every_n_train_steps", r"pytorch_lightning\..*"),
)


def quiet_known_noise() -> None:
    """Filter the dependency warnings listed in :data:`KNOWN_NOISE` (and only those) and print the other warnings
    on one line each, without the source line. Called by the ``svc-pl`` entry point, never by library code."""
    for message, module in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, module=module)
    warnings.showwarning = _show_warning_on_one_line


def _show_warning_on_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    text = re.sub(r"\s*\n\s*", " ", str(message)).strip()
    print(f"warning: {text}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_known_noise()
    from svc_pl.infer.runtime import bound_cpu_kernel_cache

    bound_cpu_kernel_cache()  # a process setting: before any model runs
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
    except ModuleNotFoundError as err:
        if not err.name or err.name.split(".")[0] not in OPTIONAL_PACKAGES:
            raise
        print(f"svc-pl {args.command}: error: {missing_package_hint(err.name)}", file=sys.stderr)
        return 2


# import name -> what to install for it (extras of svc_pl, or the package itself)
OPTIONAL_PACKAGES: dict[str, str] = {
    "onnx": "pip install 'svc_pl[onnx]'",
    "onnxruntime": "pip install 'svc_pl[onnx]'",
    "onnxscript": "pip install onnxscript",
    "resemblyzer": "pip install 'svc_pl[speaker]'",
    "gradio": "pip install 'svc_pl[webui]'",
    "sounddevice": "pip install 'svc_pl[live]'",
}


def missing_package_hint(name: str) -> str:
    """One line naming the missing optional package ``name`` and how to install it."""
    top = name.split(".")[0]
    return f"the optional package {top!r} is not installed: {OPTIONAL_PACKAGES.get(top, f'pip install {top}')}"


from svc_pl.errors import UserFacingError  # noqa: E402  (tiny module, no heavy imports)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
