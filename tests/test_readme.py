"""What the README promises a newcomer, checked: its Python example runs as written, CI runs exactly its set-up and
test commands, a plain ``pytest`` leaves out the slow tests and says how to run them, every link in the README and
docs/ leads somewhere, and every declared dependency has its reason written down."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import RUN_EVERYTHING

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def readme_python_example(text: str | None = None) -> str:
    """The README's example of converting from Python (the block that calls ``build_converter``)."""
    (code,) = [b for b in _blocks(text or README.read_text(encoding="utf-8"), "python") if "build_converter(" in b]
    return code


def readme_commands() -> tuple[str, str]:
    """The set-up command and the test command of the README's "Set up" block, without their comments."""
    text = README.read_text(encoding="utf-8")
    (block,) = [b for b in _blocks(text, "bash") if "scripts/setup.sh" in b]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    (setup,) = [line for line in lines if "scripts/setup.sh" in line]
    (test,) = [line for line in lines if "pytest" in line]
    return setup, test


def _demo_stand_in(root: Path) -> None:
    """What the example reads after ``svc-pl demo``: the demo's held-out sung line of the baritone (rendered as the
    demo renders it) and, for the fine-tuned checkpoint, the shipped base saved as one with the demo's speaker names
    (the real fine-tuned checkpoint is exercised by tests/test_demo.py)."""
    from svc_pl.cli.demo import SOURCE, TARGET
    from svc_pl.corpus import EVAL_MELODIES, VOICES, render_voice
    from svc_pl.pretrained import write_base_ckpt

    render_voice(root / "demo_out" / "held_out", VOICES[SOURCE], [], EVAL_MELODIES[:1])
    ckpt = write_base_ckpt(root / "demo_out" / "runs" / "demo" / "version_0" / "checkpoints" / "last.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["dataset_info"]["speakers"] = {TARGET: 0, SOURCE: 1}
    torch.save(state, ckpt)


def run_readme_example(root: Path, monkeypatch, code: str | None = None) -> dict:
    """Run the README's Python example in ``root`` (where ``demo_out`` is) as a user pastes it."""
    monkeypatch.chdir(root)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code or readme_python_example(), str(README), "exec"), namespace)  # noqa: S102 - our own README
    return namespace


@pytest.mark.slow  # renders a sung line, loads Whisper tiny.en, converts 4 s (about 30 s on 2 cores)
def test_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    _demo_stand_in(tmp_path)
    ns = run_readme_example(tmp_path, monkeypatch)
    src, src_sr = sf.read(tmp_path / "demo_out" / "held_out" / "baritone" / "sung_5.wav", dtype="float32")
    out, out_sr = sf.read(tmp_path / "sung_5_alto.wav", dtype="float32")
    # the rates and shapes its comments promise
    assert out_sr == ns["rate"] == 16000
    assert abs(len(out) - len(src) * out_sr / src_sr) <= 1, (len(out), len(src), src_sr)
    assert np.abs(out).max() > 0.01  # sound, not silence
    assert ns["units"].shape == (1, 384, 50) and ns["wave"].shape == (1, 1, 50 * 320)
    # the example converts to the speaker it names: another speaker gives other audio
    other = run_readme_example(tmp_path, monkeypatch, readme_python_example().replace('speaker="alto"',
                                                                                      'speaker="baritone"'))
    assert not np.allclose(other["out"], ns["out"], atol=1e-3)


def test_readme_sovits_example_runs_on_a_real_sovits_model(fixture_dir, tmp_path, monkeypatch):
    """The README's so-vits-svc snippet on the parity fixture (a real so-vits-svc 4.1 G_0.pth), given inputs."""
    import json
    import shutil

    (code,) = [b for b in _blocks(README.read_text(encoding="utf-8"), "python") if "load_sovits(" in b]
    shutil.copy(fixture_dir / "G_0.pth", tmp_path / "G_30400.pth")
    shutil.copy(fixture_dir / "config.json", tmp_path / "config.json")
    dim = json.loads((fixture_dir / "config.json").read_text())["model"]["ssl_dim"]
    # what a user brings: units (B, D, N), F0 (B, N) in Hz, voiced flags (B, N)
    ns = {"units": torch.randn(1, dim, 30), "f0": torch.full((1, 30), 220.0), "uv": torch.ones(1, 30)}
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - our own README
    assert ns["audio"].shape == (1, 1, 30 * ns["model"].hop_length)
    from svc_pl.compat import load_sovits

    again = load_sovits(tmp_path / "export" / "G_0.pth", tmp_path / "config.json")  # what it wrote loads back
    assert torch.equal(again.infer(ns["units"], ns["f0"], ns["uv"], speaker=0)[0], ns["audio"])


def test_readme_python_example_is_found_and_uses_the_front_door():
    code = readme_python_example()
    for name in ("build_converter", "ConvertOptions", ".convert(", "sampling_rate"):
        assert name in code, name
    with pytest.raises(ValueError):  # a README with the example twice (or not at all) is an error, not a guess
        readme_python_example("```python\nbuild_converter(1)\n```\n" * 2)


def test_ci_runs_exactly_the_readme_setup_and_test_commands():
    setup, test = readme_commands()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    environment = ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "python3 -m venv --clear .venv-ci",
                   ". .venv-ci/bin/activate"]
    assert commands == environment + [setup, test], commands
    # CI runs everything, and the line a plain pytest prints names that same command
    assert "--run-slow" in test.split() and test == RUN_EVERYTHING


def _pytest(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_plain_pytest_leaves_out_slow_tests_and_says_how_to_run_them():
    target = "tests/test_packaging.py"  # one quick test and one slow one
    plain = _pytest("-q", target)
    assert "test_wheel_in_a_fresh_venv_has_configs_and_base" not in plain and "1 deselected" in plain, plain
    assert f"1 slow test(s) not run (marked slow); run everything, as CI does, with: {RUN_EVERYTHING}" in plain
    everything = _pytest("-q", "--run-slow", target)
    assert "test_wheel_in_a_fresh_venv_has_configs_and_base" in everything and "deselected" not in everything
    assert "not run" not in everything
    # asked for by name, a slow test runs
    named = _pytest("-q", f"{target}::test_wheel_in_a_fresh_venv_has_configs_and_base")
    assert "test_wheel_in_a_fresh_venv_has_configs_and_base" in named and "deselected" not in named


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_every_link_in_the_readme_and_docs_leads_somewhere():
    pages = [README, REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
    readme = README.read_text(encoding="utf-8")
    for page in sorted((REPO / "docs").glob("*.md")):  # every page is reachable from the front door
        assert f"docs/{page.name}" in readme or f"({page.name})" in (REPO / "docs" / "index.md").read_text(), page


def test_every_declared_dependency_has_its_reason_written_down():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")
    declared = cfg["options"]["install_requires"].split()
    for extra in cfg["options.extras_require"].values():
        declared += extra.split()
    names = {re.split(r"[\[<>=!~ ]", req, maxsplit=1)[0].lower() for req in declared if req}
    reasons = (REPO / "docs" / "dependencies.md").read_text(encoding="utf-8").lower()
    table = "\n".join(line for line in reasons.splitlines() if line.startswith("|"))
    missing = sorted(n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", table))
    assert not missing, f"declared in setup.cfg without a reason in docs/dependencies.md: {missing}"
    assert "docs/dependencies.md" in README.read_text(encoding="utf-8")  # the README's line that leads there
