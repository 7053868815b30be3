"""Training through LightningCLI: ``svc-pl fit --config tiny --data.dataset_dir DIR``.

``--config`` takes a path or the name of a config shipped in ``svc_pl/configs`` (``tiny``, ``tiny-nsf``,
``44k``, ``44k-tiny``, ...). A config whose header says ``# Extends: NAME`` (a shipped config's name or a path) is
read after that one, as LightningCLI reads repeated ``--config`` options: ``44k-tiny.yaml`` is ``44k.yaml`` plus
the lines that differ. Each shipped config says in its header how to preprocess data for it
(``# Preprocess for it with: svc-pl preprocess IN OUT ...``); when a dataset's hop does not fit a config's decoder,
the error quotes that line and names the shipped configs that fit.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def shipped_configs() -> dict[str, Path]:
    """Config name -> its YAML inside the package."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


_EXTENDS = re.compile(r"#\s*Extends:\s*(\S+)\s*$")


def _extends(path: Path) -> str | None:
    """The NAME of a ``# Extends: NAME`` line in the header of a config file, if any."""
    for line in path.read_text(encoding="utf-8").splitlines()[:20]:
        match = _EXTENDS.match(line)
        if match:
            return match.group(1)
    return None


def config_chain(value: str) -> list[str]:
    """The files ``--config value`` stands for: a shipped config's name -> its path, preceded by the configs it
    extends (``# Extends: NAME`` in its header: a shipped config's name, or a file beside it)."""
    from svc_pl.errors import UserFacingError

    configs = shipped_configs()
    chain: list[str] = []
    while True:
        path = configs[value] if value in configs and not Path(value).exists() else Path(value)
        if not path.is_file():
            if chain:
                raise UserFacingError(f"{chain[0]}: '# Extends: {value}' names neither a shipped config "
                                      f"({', '.join(configs)}) nor a file beside it")
            return [value]  # LightningCLI says what is wrong with it
        if str(path) in chain:
            raise UserFacingError(f"{path}: its '# Extends:' lines lead back to itself")
        chain.insert(0, str(path))
        base = _extends(path)
        if base is None:
            return chain
        value = str(path.parent / base) if (path.parent / base).is_file() else base


def resolve_config_args(argv: list[str]) -> list[str]:
    """Replace ``--config NAME`` (and ``--config=NAME``) by the shipped config's path when NAME is not a file, and
    put the configs a config extends before it (each as its own ``--config``)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c") and i + 1 < len(argv):
            out += [item for path in config_chain(argv[i + 1]) for item in (arg, path)]
            i += 2
            continue
        if arg.startswith("--config="):
            out += [f"--config={path}" for path in config_chain(arg.split("=", 1)[1])]
        else:
            out.append(arg)
        i += 1
    return out


_PREPROCESS = "# Preprocess for it with:"


def preprocess_command(path: Path) -> str | None:
    """The ``svc-pl preprocess`` command a config's header gives for its data, or None if it gives none."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith(_PREPROCESS):
            parts = [line[len(_PREPROCESS):]]
            while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                parts[-1] = parts[-1].rstrip()[:-1]
                parts.append(lines[i].lstrip("#"))
            return " ".join(" ".join(parts).split())
    return None


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
