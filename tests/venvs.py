"""Virtual environments for tests that start a fresh interpreter.

``venv.create(..., system_site_packages=True)`` inherits the *base* interpreter's site-packages, not those of
the environment running the suite: run from a virtual environment or a conda env, the new one would not see
torch. :func:`make_venv` makes the new environment inherit the running interpreter's own site directories
instead, through a ``.pth`` file in its site-packages, so it sees what this interpreter sees (system Python,
venv or conda alike) while its own site-packages still come first.
"""

from __future__ import annotations

import os
import site
import subprocess
import venv
from pathlib import Path

PTH_NAME = "_svc_pl_tests_parent_env.pth"


def site_dirs() -> list[str]:
    """The running interpreter's site directories in its search order: its own site-packages (a venv's, then the
    base ones a ``--system-site-packages`` venv sees) and the user site where it is enabled."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def make_venv(env_dir: Path) -> Path:
    """Create a virtual environment at ``env_dir`` (no pip) that sees this interpreter's packages after its own;
    returns its ``python``.

    Each directory is added with ``site.addsitedir``, so the ``.pth`` files there run as they do here (editable
    installs, setuptools' ``distutils-precedence.pth``); directories are appended to ``sys.path``, so a package
    installed into the new environment wins over the same package here.
    """
    env_dir = Path(env_dir)
    venv.create(env_dir, system_site_packages=False, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, env=clean_env()).stdout.strip()
    lines = [f"import site; site.addsitedir({d!r})" for d in site_dirs()]
    (Path(purelib) / PTH_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python


def clean_env() -> dict[str, str]:
    """This process's environment without the variables that would point a child interpreter elsewhere."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
