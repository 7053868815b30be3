"""bench/isa/hide_avx512.c, the preload that lets the benchmarks measure AVX2 kernels on an AVX-512 CPU
(`bench_infer.py --hide-avx512`): the processes it is loaded into see no AVX-512, and a real crash still
crashes."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _common():
    spec = importlib.util.spec_from_file_location("bench_common", REPO / "bench" / "_common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


needs_cpuid_faulting = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "cpuid_fault" not in Path("/proc/cpuinfo").read_text()
    or shutil.which("gcc") is None,
    reason="needs Linux CPUID faulting (the cpuid_fault flag of /proc/cpuinfo) and gcc to build the preload")


def _run(code: str, lib: Path | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HIDE_AVX512_STRICT="1", PYTHONPATH=str(REPO))
    if lib is not None:
        env["LD_PRELOAD"] = str(lib)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@needs_cpuid_faulting
def test_preloaded_processes_see_no_avx512():
    lib = _common().build_hide_avx512()
    probe = ("import torch, onnxruntime, numpy as np;"
             "from svc_pl.infer.ort_graphs import planar_min_channels;"
             "print(torch.backends.cpu.get_cpu_capability(), planar_min_channels());"
             "print(float(torch.nn.functional.conv1d(torch.ones(1, 4, 16), torch.ones(2, 4, 3)).sum()))")
    hidden = _run(probe, lib)
    assert hidden.returncode == 0, hidden.stderr[-2000:]
    capability, planar, total = hidden.stdout.split()
    assert capability in ("AVX2", "DEFAULT"), capability  # never AVX512, whatever the CPU has
    assert planar == {"AVX2": "64", "DEFAULT": "None"}[capability]  # the ONNX decoder's choice follows
    assert float(total) == 2 * 14 * 12  # the AVX2 kernels compute the right thing
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    if "avx512f" in flags and " avx2" in flags:
        assert _run("import torch; print(torch.backends.cpu.get_cpu_capability())", None).stdout.strip() == "AVX512"


@needs_cpuid_faulting
def test_a_real_segfault_still_kills_the_process():
    """The handler steps over CPUID only; any other fault is handed on, so a crash is not turned into a hang."""
    lib = _common().build_hide_avx512()
    crashed = _run("import ctypes; ctypes.string_at(0)", lib)
    assert crashed.returncode == -11, (crashed.returncode, crashed.stderr[-500:])
