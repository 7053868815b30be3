"""The front door from files to a :class:`~svc_pl.infer.converter.Converter`, by the names the CLI and the web UI
call: :func:`build_converter` is :meth:`Converter.from_files` (the voice model, its content encoder with the
unit-size check, the shallow-diffusion stage, the enhancer, the cluster model and the feature index, loaded and
checked in one place), :func:`diffusion_stage` (:func:`svc_pl.infer.diffusion.diffusion_stage`), and
:func:`check_speakers`."""

from __future__ import annotations

from svc_pl.infer.converter import Converter
from svc_pl.infer.diffusion import diffusion_stage
from svc_pl.infer.options import ConvertOptions

__all__ = ["build_converter", "check_speakers", "diffusion_stage"]

build_converter = Converter.from_files  # the name the CLI and the web UI have long called


def check_speakers(voice, opts: ConvertOptions) -> None:
    """Raise the model's unknown-speaker error for any speaker ``opts`` names (target, mix or keyframes)."""
    spk = opts.speaker
    names = list(spk) if isinstance(spk, dict) else [spk]
    for frame in opts.speaker_keyframes or []:
        names += list(frame[1])
    for name in names:
        voice.speaker_id(name)
