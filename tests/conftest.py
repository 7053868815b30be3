import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE = SHARED / "fixtures" / "sovits41-small"


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
        raise FileNotFoundError(f"{FIXTURE} is missing: the tests need ../shared beside the repo")
    return FIXTURE
