"""Process- and hardware-level settings for conversion: the precision ``auto`` picks, giving freed
heap memory back between clips, and bounding oneDNN's kernel cache."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

import torch

LOG = logging.getLogger(__name__)


def release_free_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Between clips the tensors of the last one are free but, scattered among live allocations, stay
    in the process and fragment it; returned after every clip, the peak stays close to that of one
    clip however many came before (measured on 600 s of speech: 1.80 -> 1.69 GiB peak). It costs
    about 10 microseconds.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def bound_cpu_kernel_cache(capacity: int = 256) -> None:
    """Cap oneDNN's kernel cache (PyTorch's CPU convolutions), unless the user has set it.

    oneDNN compiles and caches kernels per input shape, up to 1024 of them by default; a long
    conversion meets many clip shapes and the cache grows by hundreds of MB before it is full. 256
    holds every kernel the converter reuses (the decoder's window, the length buckets' encoders) and
    keeps peak memory flat in the input's length. It takes effect if no oneDNN kernel has been built
    in this process yet (oneDNN reads the variable once).
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(capacity))


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """"fp32" or "bf16" for ``precision`` ("fp32", "bf16" or "auto") on ``device``.

    "auto" is bf16 on CPUs with native bfloat16 arithmetic (AVX-512 BF16 or AMX), where it converts 2.3-2.8x
    faster than fp32 (3.6x the reference on a 2-core Xeon with AMX, docs/benchmarks.md), and fp32 elsewhere:
    on CPUs without it bf16 is emulated and many times slower, and on CUDA the
    autocast casts cost more than these small convolutions gain (an H200 converted 60 s in 1.63 s fp32 against
    2.07 s bf16, with 5 % less GPU memory: ``bench/bench_infer.py --device cuda``). ``"bf16"`` still forces it.
    """
    if precision in ("fp32", "bf16"):
        return precision
    if precision != "auto":
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    device = torch.device(device)
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX)."""
    cpu = getattr(torch, "cpu", None)
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def warn_if_bf16_is_emulated(precision: str, device: str | torch.device) -> None:
    """One warning when ``precision`` "bf16" is forced on a CPU that would emulate it (many times slower)."""
    if precision == "bf16" and torch.device(device).type == "cpu" and not cpu_has_native_bf16():
        LOG.warning("bf16 on this CPU (no AVX-512 BF16 or AMX) is emulated and many times slower than fp32: "
                    "use --precision auto or fp32")
