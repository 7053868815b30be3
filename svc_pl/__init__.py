"""svc_pl: singing voice conversion as a PyTorch Lightning package.

The synthesizer is the so-vits-svc 4.1 generator (content units + F0 + speaker -> VITS prior/flow ->
NSF-HiFiGAN); ``svc_pl.compat`` loads and writes so-vits-svc checkpoints.

The names most programs need are here, each imported on first use (``import svc_pl`` loads no torch)::

    from svc_pl import Converter, ConvertOptions

    conv = Converter.from_files("last.ckpt", "whisper-tiny.en.pt")  # or a so-vits-svc G_*.pth (config.json beside)
    out = conv.convert(audio, sr, ConvertOptions(speaker="alto"))  # (T,) at sr -> (T',) at conv.model.sampling_rate
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "Synthesizer": "svc_pl.synthesizer",
    "NetConfig": "svc_pl.synthesizer",
    "load_voice_model": "svc_pl.infer.loading",
    "Converter": "svc_pl.infer.converter",
    "ConvertOptions": "svc_pl.infer.options",
    "build_converter": "svc_pl.infer.build",
    "load_content_encoder": "svc_pl.data.content",
    "load_sovits": "svc_pl.compat",
    "save_sovits": "svc_pl.compat",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'svc_pl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
