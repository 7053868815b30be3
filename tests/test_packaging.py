"""The package as a user installs it: a wheel in a fresh virtual environment, away from the repository."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.venvs import clean_env, make_venv, site_dirs

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_a_test_venv_sees_the_packages_of_the_environment_running_the_suite(tmp_path):
    # whatever runs the suite (system Python, a venv, a conda env), a venv made for a test finds the same torch,
    # and its own site-packages come before the inherited ones
    python = make_venv(tmp_path / "venv")
    code = ("import importlib.util, json, sys, sysconfig; "
            "print(json.dumps([sys.path, sysconfig.get_paths()['purelib'], importlib.util.find_spec('torch').origin]))")
    path, own, torch_origin = json.loads(_run([str(python), "-c", code], cwd=tmp_path).stdout)
    assert torch_origin == importlib.util.find_spec("torch").origin
    inherited = site_dirs()
    assert inherited and all(d in path for d in inherited), (inherited, path)
    assert path.index(own) < min(path.index(d) for d in inherited)


@pytest.mark.slow  # builds a wheel and a virtual environment (about 30 s)
def test_wheel_in_a_fresh_venv_has_configs_and_base(tmp_path):
    # build from a copy of the sources, so nothing is written into the checkout
    src = tmp_path / "src"
    shutil.copytree(REPO / "svc_pl", src / "svc_pl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(src),
          "-w", str(wheels)], cwd=tmp_path)
    (wheel,) = wheels.glob("svc_pl-*.whl")

    # dependencies (torch, Lightning, ...) from the environment running the suite; svc_pl only from the wheel
    env_dir = tmp_path / "venv"
    python, svc_pl_cmd = make_venv(env_dir), env_dir / "bin" / "svc-pl"
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
         cwd=tmp_path)
    work = tmp_path / "user"  # a user's folder: neither the repository nor the sources
    work.mkdir()
    where = _run([str(python), "-c", "import svc_pl; print(svc_pl.__file__)"], cwd=work).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where  # not the editable checkout

    printed = yaml.safe_load(_run([str(svc_pl_cmd), "fit", "--config", "tiny", "--print_config"], cwd=work).stdout)
    assert printed["model"]["net"]["decoder"] == "ddsp" and printed["model"]["segment_frames"] == 50
    tiny44 = yaml.safe_load(_run([str(svc_pl_cmd), "fit", "--config", "44k-tiny", "--print_config"], cwd=work).stdout)
    assert tiny44["model"]["net"]["filter_channels"] == 512 and tiny44["trainer"]["log_every_n_steps"] == 400
    listed = _run([str(svc_pl_cmd), "config"], cwd=work).stdout
    assert all(name in listed for name in ("tiny", "tiny-nsf", "44k", "44k-tiny"))
    assert "decoder: ddsp" in _run([str(svc_pl_cmd), "config", "tiny"], cwd=work).stdout

    code = ("import torch; from svc_pl.pretrained import load_base_synthesizer; "
            "net, meta = load_base_synthesizer('tiny-base'); "
            "audio, _ = net.infer(torch.randn(1, net.ssl_dim, 20), torch.full((1, 20), 200.0), torch.ones(1, 20), 0); "
            "assert audio.shape == (1, 1, 20 * net.hop_length) and bool(torch.isfinite(audio).all()); "
            "import svc_pl.pretrained as p; print(p.__file__)")
    base_from = _run([str(python), "-c", code], cwd=work).stdout.strip()
    assert Path(base_from).is_relative_to(env_dir)
