"""The training configs shipped with svc_pl, and the conventions every config follows (one home for them).

- A config is named by its path or, for one shipped here, by its name: ``--config tiny`` (:func:`shipped_configs`).
- ``# Extends: NAME`` in a config's header (a shipped config's name, or a file beside it) reads that config first,
  as LightningCLI reads repeated ``--config`` options: ``44k-tiny.yaml`` is ``44k.yaml`` plus the lines that differ
  (:func:`config_chain`, :func:`resolve_config_args`).
- ``# Preprocess for it with: svc-pl preprocess IN OUT ...`` in the header says how to make data for it
  (:func:`preprocess_command`).
- ``model.class_path`` (with its settings under ``model.init_args``) names the LightningModule a config trains; a
  config without one trains the synthesizer (:func:`model_class_path`). Older configs that name no class but set
  ``model.diffusion`` train the diffusion model, as they always did.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent
SYNTHESIZER_MODULE = "svc_pl.lightning.module.SVCModule"
DIFFUSION_MODULE = "svc_pl.lightning.diffusion_module.DiffusionModule"

_EXTENDS = re.compile(r"#\s*Extends:\s*(\S+)\s*$")
_PREPROCESS = "# Preprocess for it with:"


def shipped_configs() -> dict[str, Path]:
    """Config name -> its YAML inside the package."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


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


# ------------------------------------------------------------------------------------------- the model's class

def model_class_path(argv: list[str] | None) -> str | None:
    """The ``model.class_path`` that a ``fit``/``validate`` command line names (``--model CLASS``,
    ``--model.class_path CLASS``, or a ``--config`` file's ``model.class_path``, following the files it reads
    first with ``config:``; the last one given wins), or None when none names one."""
    found = None
    for arg, value in _options(argv):
        if arg in ("--config", "-c"):
            found = _class_path_in(Path(value), depth=0) or found
        elif arg in ("--model", "--model.class_path") and not value.lstrip().startswith(("{", "/")) \
                and not value.endswith((".yaml", ".yml", ".json")):
            found = value
    return found


def trains_diffusion(argv: list[str] | None) -> bool:
    """For configs that name no ``model.class_path`` (written before it was the convention): whether they train
    the diffusion model, i.e. a config sets ``model.diffusion`` or ``--model.diffusion...`` is given."""
    if any(arg.startswith("--model.diffusion") for arg, _ in _options(argv)):
        return True
    return any(_model_section(Path(v), 0, lambda model: "diffusion" in model) for a, v in _options(argv)
               if a in ("--config", "-c"))


def _options(argv: list[str] | None) -> list[tuple[str, str]]:
    """(option, value) pairs of ``argv``, for ``--opt value`` and ``--opt=value`` alike."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    pairs = []
    for i, arg in enumerate(args):
        if arg.startswith("-") and "=" in arg:
            pairs.append(tuple(arg.split("=", 1)))
        elif arg.startswith("-"):
            pairs.append((arg, args[i + 1] if i + 1 < len(args) else ""))
    return pairs


def _class_path_in(path: Path, depth: int) -> str | None:
    return _model_section(path, depth, lambda model: model.get("class_path") or None)


def _model_section(path: Path, depth: int, ask) -> Any:
    """``ask(model section)`` of the config at ``path``, else of the config it reads first (``config: FILE``)."""
    import yaml

    if depth > 8 or not path.is_file():
        return None
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None  # LightningCLI reports the bad file
    if not isinstance(cfg, dict):
        return None
    model = cfg.get("model")
    answer = ask(model) if isinstance(model, dict) else None
    base = cfg.get("config")
    if answer or not isinstance(base, str):
        return answer
    return _model_section(path.parent / base, depth + 1, ask)
