"""Build modules whose weights a file replaces at once without drawing random ones first (:func:`constant_init`)."""

from __future__ import annotations

import contextlib
import threading

import torch

_INITIALISERS = ("kaiming_uniform_", "kaiming_normal_", "uniform_", "normal_", "xavier_uniform_", "xavier_normal_",
                 "trunc_normal_")
_CONSTANT = threading.local()  # .depth: constant_init blocks open in this thread
_INSTALLED: dict[str, object] = {}  # torch's own initialisers while ours stand in for them
_USERS = [0]  # constant_init blocks open in all threads
_LOCK = threading.Lock()


def _stand_in(name: str):
    def init_(tensor, *args, **kwargs):
        if getattr(_CONSTANT, "depth", 0):
            with torch.no_grad():
                return tensor.fill_(1.0)
        return _INSTALLED[name](tensor, *args, **kwargs)

    return init_


@contextlib.contextmanager
def constant_init():
    """Layers built inside, in this thread, start at one instead of drawing random weights: the file's weights
    replace them at once, and the draws (torch's Kaiming-uniform of every linear and convolution) were 0.4-0.7 s of
    loading the so-vits-svc 4.1 model on a 2-core CPU. A constant rather than empty memory, so that a weight a file
    does not hold is defined, and not zero, whose weight norm folds to 0/0. Other threads keep torch's
    initialisers: the stand-ins call them there."""
    from torch.nn import init

    with _LOCK:
        if _USERS[0] == 0:
            for n in _INITIALISERS:
                _INSTALLED[n] = getattr(init, n)
                setattr(init, n, _stand_in(n))
        _USERS[0] += 1
    _CONSTANT.depth = getattr(_CONSTANT, "depth", 0) + 1
    try:
        yield
    finally:
        _CONSTANT.depth -= 1
        with _LOCK:
            _USERS[0] -= 1
            if _USERS[0] == 0:
                for n, f in _INSTALLED.items():
                    setattr(init, n, f)
                _INSTALLED.clear()
