"""Load a voice model for conversion: an svc_pl Lightning checkpoint, or a so-vits-svc G_*.pth + config.json."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from svc_pl.errors import UserFacingError
from svc_pl.layers.fast_init import constant_init
from svc_pl.run_checkpoint import read_ckpt, segment_frames, state_under
from svc_pl.synthesizer import Synthesizer

LOG = logging.getLogger(__name__)


@dataclass
class VoiceModel:
    """A synthesizer ready for inference and what conversion needs to know about it."""

    net: Synthesizer
    sampling_rate: int
    hop_length: int
    speakers: dict[str, int]
    content_encoder: str
    unit_interpolate_mode: str
    source: str
    unit_window: dict[str, int] | None = None  # units made as a stream makes them (svc_pl.data.unit_window)
    unit_stats: dict[str, dict] | None = None  # per-speaker unit mean/std of the training data (svc_pl.data.unit_stats)

    def wrap_encoder(self, encoder):
        """The content encoder as this model was trained on it: windowed when its units were."""
        from svc_pl.data.unit_window import UnitWindow, WindowedEncoder

        window = UnitWindow.from_dict(self.unit_window)
        if window is None or isinstance(encoder, WindowedEncoder):
            return encoder
        return WindowedEncoder(encoder, window)

    def speaker_id(self, speaker: str | int) -> int:
        """A speaker name (or numeric id) -> id, with an error listing the model's speakers."""
        if isinstance(speaker, int) or (isinstance(speaker, str) and speaker.isdigit() and speaker not in self.speakers):
            sid = int(speaker)
            if 0 <= sid < self.net.n_speakers:
                return sid
        elif speaker in self.speakers:
            return int(self.speakers[speaker])
        known = ", ".join(f"{k} ({v})" for k, v in sorted(self.speakers.items(), key=lambda kv: kv[1])) or "none named"
        raise UserFacingError(f"unknown speaker {speaker!r} for {self.source}; this model has: {known}")


def load_voice_model(model_path: str | os.PathLike, config_path: str | os.PathLike | None = None,
                     device: str | torch.device = "cpu") -> VoiceModel:
    """Load ``model_path`` (``.ckpt`` from svc_pl training, or so-vits-svc ``G_*.pth``; its ``config.json`` is
    taken from ``config_path`` or from beside the model) with weight norm folded, in eval mode on ``device``."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UserFacingError(f"{model_path}: model file not found")
    if model_path.suffix == ".ckpt":
        with constant_init():
            vm = _from_lightning(model_path)
    else:
        config_path = Path(config_path) if config_path else model_path.with_name("config.json")
        if not config_path.is_file():
            raise UserFacingError(f"{config_path}: config not found; pass the model's config.json with --config")
        from svc_pl.compat import load_sovits

        with constant_init():  # a weight the file lacks (enc_q of a "release" G_*.pth, unused here) stays one
            net = load_sovits(model_path, config_path)
        cfg = net.sovits_config
        vm = VoiceModel(net, cfg.sampling_rate, cfg.hop_length, dict(cfg.spk), cfg.speech_encoder,
                        cfg.data.get("unit_interpolate_mode", "left"), str(model_path))
    vm.net.prepare_for_inference().to(device)
    return vm


def _from_lightning(path: Path) -> VoiceModel:
    """A ``.ckpt`` from ``svc-pl fit``: ``torch.load(weights_only=True)`` and the synthesizer's own builder
    (:meth:`Synthesizer.from_config`), without Lightning."""
    from svc_pl.compat.checkpoint import load_state_into

    ckpt = read_ckpt(path)
    hp = ckpt.get("hyper_parameters")
    if not hp or "net" not in hp or "dataset_info" not in hp:
        raise UserFacingError(f"{path}: not an svc_pl training checkpoint (no model hyper-parameters)")
    info = hp["dataset_info"]
    net = Synthesizer.from_config(hp["net"], info, segment_frames(hp))
    load_state_into(net, state_under(ckpt["state_dict"], "net."), str(path))
    stats = ckpt.get("unit_stats")
    if stats is not None:
        from svc_pl.data.unit_stats import check_unit_stats

        stats = check_unit_stats(stats, str(path))
    return VoiceModel(net.eval(), int(info["sampling_rate"]), int(info["hop_length"]), dict(info["speakers"]),
                      str(info["content_encoder"]), str(info.get("unit_interpolate_mode", "nearest")), str(path),
                      dict(info.get("unit_window") or {}) or None, stats)
