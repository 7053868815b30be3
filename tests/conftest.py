import os
from pathlib import Path

import pytest
import torch

_SLOW_LEFT_OUT = pytest.StashKey[int]()

# two threads per test process; under pytest-xdist (the README's test command runs one worker per core) the cores
# are shared among the workers, so that parallel tests do not oversubscribe the CPU
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))

# the so-vits-svc 4.1 parity fixture (a real small checkpoint, its config, inputs and upstream's outputs), a copy of
# the project's shared/fixtures/sovits41-small kept in the repo so the tests need nothing beside it
FIXTURE = Path(__file__).resolve().parent / "data" / "sovits41-small"
# the README's test command, which CI (.ci/run) runs: every test, the slow ones included
RUN_EVERYTHING = "python -m pytest -q --run-slow -n auto --dist loadfile"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow (a plain `pytest` leaves them out; CI runs them)")


def _runs_slow(config) -> bool:
    """Slow tests run with --run-slow, or when a -m expression names the marker (``-m slow``, ``-m "not slow"``:
    the user chose)."""
    return config.getoption("--run-slow") or "slow" in (config.getoption("markexpr") or "")


def _named(item, config) -> bool:
    """The test was asked for by its id (``pytest tests/test_demo.py::test_short_demo...``): it runs."""
    for arg in config.args:
        file, sep, name = str(arg).partition("::")
        if sep and Path(file).name == item.path.name and item.nodeid.split("::", 1)[1].startswith(name):
            return True
    return False


# The test files that take minutes (2026-12-03, 2 cores): run first, so that with one pytest-xdist worker per core
# (each file in one worker) none of them starts last and leaves the other cores idle while it finishes
LONGEST_FILES = ("test_webui_train.py", "test_demo.py", "test_training.py", "test_webui_options.py",
                 "test_crash_safe.py", "test_infer.py")


def pytest_collection_modifyitems(config, items):
    """The longest files first (a stable sort: each file's tests keep their order). A plain ``pytest`` deselects the
    tests marked slow (minutes each), unless asked for by id; the summary says how to run them."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    if _runs_slow(config):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None and not _named(item, config)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        left_out = set(map(id, slow))
        items[:] = [item for item in items if id(item) not in left_out]
    config.stash[_SLOW_LEFT_OUT] = len(slow)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    left_out = config.stash.get(_SLOW_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(f"{left_out} slow test(s) not run (marked slow); run everything, as CI does, "
                                    f"with: {RUN_EVERYTHING}", yellow=True)


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache_outside_home(tmp_path_factory):
    """Conversions with ``--backend auto`` on an fp32 CPU export ONNX graphs: into a folder of this test session, never
    the user's cache."""
    if "SVC_PL_CACHE" in os.environ:
        yield
        return
    os.environ["SVC_PL_CACHE"] = str(tmp_path_factory.mktemp("svc_pl_cache"))
    yield
    os.environ.pop("SVC_PL_CACHE", None)


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    if not FIXTURE.is_dir():
        raise FileNotFoundError(f"{FIXTURE} is missing: restore tests/data/sovits41-small from git")
    return FIXTURE
