"""The silence slicer's old address: it lives in :mod:`svc_pl.data.slicer` (preprocessing and inference share it)."""

from svc_pl.data.slicer import Chunk, Slicer

__all__ = ["Chunk", "Slicer"]
