"""The end of a multi-process run."""

from __future__ import annotations


def close_process_group() -> None:
    """Ends the ranks' process group before the interpreter exits. Left to interpreter shutdown, gloo's
    threads were sometimes still joinable when their objects were destroyed, and a process that had done
    all its work died with SIGABRT ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
