"""NSF-HiFiGAN enhancer: re-vocode converted audio with openvpi's pretrained vocoder
(upstream: ``modules/enhancer.py`` with ``vdecoder/nsf_hifigan``).

The audio is turned into openvpi's log-mel spectrogram and synthesised again from it and the
conversion's F0. ``adaptive_key`` shifts the vocoder's working range: the audio is resampled to a
rate ``2**(key/12)`` times the vocoder's and the F0 scaled to match, which helps for high voices.

openvpi's vocoder directory (e.g. ``pretrain/nsf_hifigan``) holds ``model`` (a torch checkpoint
``{"generator": state_dict}`` with legacy ``weight_g``/``weight_v`` names) and ``config.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from svc_pl.compat.checkpoint import load_state_into
from svc_pl.data.spectral import LogMelSpectrogram
from svc_pl.errors import ConfigError, UserFacingError
from svc_pl.io import read_weights
from svc_pl.layers.conv import remove_all_weight_norm
from svc_pl.layers.nsf import NSFHiFiGAN

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocoderConfig:
    """The keys of openvpi's vocoder ``config.json`` that define the network and its mel front end."""

    sampling_rate: int
    num_mels: int
    n_fft: int
    win_size: int
    hop_size: int
    fmin: float
    fmax: float | None
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock: str
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> VocoderConfig:
        """Read and check ``config.json``; errors name the file and what is wrong."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: vocoder config not found; openvpi's NSF-HiFiGAN directory must hold "
                "'model' and 'config.json'"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot be read as JSON ({err})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ConfigError(f"{path}: not an NSF-HiFiGAN vocoder config: missing {', '.join(missing)}")
        cfg = cls(
            sampling_rate=int(data["sampling_rate"]),
            num_mels=int(data["num_mels"]),
            n_fft=int(data["n_fft"]),
            win_size=int(data["win_size"]),
            hop_size=int(data["hop_size"]),
            fmin=float(data["fmin"]),
            fmax=None if data["fmax"] is None else float(data["fmax"]),
            upsample_rates=tuple(int(r) for r in data["upsample_rates"]),
            upsample_kernel_sizes=tuple(int(k) for k in data["upsample_kernel_sizes"]),
            upsample_initial_channel=int(data["upsample_initial_channel"]),
            resblock=str(data["resblock"]),
            resblock_kernel_sizes=tuple(int(k) for k in data["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(
                tuple(int(d) for d in ds) for ds in data["resblock_dilation_sizes"]
            ),
        )
        if math.prod(cfg.upsample_rates) != cfg.hop_size:
            raise ConfigError(
                f"{path}: hop_size {cfg.hop_size} differs from the product of upsample_rates "
                f"{list(cfg.upsample_rates)}; the vocoder needs them equal"
            )
        return cfg

    def build(self) -> NSFHiFiGAN:
        """The vocoder network (random weights) in openvpi's layout."""
        return NSFHiFiGAN(
            self.num_mels,
            self.sampling_rate,
            self.upsample_rates,
            self.upsample_kernel_sizes,
            self.upsample_initial_channel,
            self.resblock,
            self.resblock_kernel_sizes,
            self.resblock_dilation_sizes,
            gin_channels=0,
            padding="openvpi",
            source="frame",
        )


def _read_generator_state(path: Path) -> dict[str, torch.Tensor]:
    ckpt = read_weights(path, what="vocoder checkpoint",
                        corrupt="; the file may be truncated or corrupt: download or copy it again")
    if isinstance(ckpt, dict) and isinstance(ckpt.get("generator"), dict):
        return ckpt["generator"]
    keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
    raise UserFacingError(f"{path}: no 'generator' entry ({keys}): not openvpi's NSF-HiFiGAN checkpoint")


def load_openvpi_vocoder(
    model_dir_or_file: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[NSFHiFiGAN, VocoderConfig]:
    """Load openvpi's NSF-HiFiGAN vocoder for inference.

    Args:
        model_dir_or_file: the vocoder directory, or its ``model`` file (``config.json`` beside it).
        device: where to put the network.
    Returns:
        (the vocoder in eval mode with weight norm folded, its config). The load is strict: a
        checkpoint that does not fit the config raises :class:`~svc_pl.errors.CheckpointMismatchError`
        listing the tensors.
    """
    path = Path(model_dir_or_file)
    model_path = path / "model" if path.is_dir() else path
    if not model_path.is_file():
        raise UserFacingError(
            f"{model_path}: vocoder checkpoint not found; pass openvpi's NSF-HiFiGAN directory "
            "(holding 'model' and 'config.json', e.g. pretrain/nsf_hifigan) or its 'model' file"
        )
    cfg = VocoderConfig.from_json(model_path.with_name("config.json"))
    vocoder = cfg.build()
    load_state_into(vocoder, _read_generator_state(model_path), str(model_path))
    remove_all_weight_norm(vocoder)
    LOG.info("loaded NSF-HiFiGAN vocoder %s (%d Hz, hop %d)", model_path, cfg.sampling_rate, cfg.hop_size)
    return vocoder.to(device).eval(), cfg


class Enhancer(nn.Module):
    """Re-vocode audio with openvpi's NSF-HiFiGAN (see the module docstring).

    Args:
        vocoder: the vocoder network (from :func:`load_openvpi_vocoder`).
        config: its config.
    """

    def __init__(self, vocoder: NSFHiFiGAN, config: VocoderConfig):
        super().__init__()
        self.vocoder = vocoder
        self.config = config
        self.mel = LogMelSpectrogram.from_config(config)
        self.resamplers = nn.ModuleDict()

    @classmethod
    def from_pretrained(
        cls, model_dir_or_file: str | os.PathLike, device: str | torch.device = "cpu"
    ) -> Enhancer:
        vocoder, cfg = load_openvpi_vocoder(model_dir_or_file, device)
        return cls(vocoder, cfg).to(device).eval()

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def hop_size(self) -> int:
        return self.config.hop_size

    def _resample(self, audio: torch.Tensor, orig: int, new: int) -> torch.Tensor:
        if orig == new:
            return audio
        key = f"{orig}_{new}"
        if key not in self.resamplers:
            from torchaudio.transforms import Resample

            self.resamplers[key] = Resample(orig, new, lowpass_filter_width=128).to(self.mel.window.device)
        return self.resamplers[key](audio)

    @torch.no_grad()
    def enhance(
        self,
        audio: torch.Tensor,
        sample_rate: int,
        f0: torch.Tensor,
        hop_size: int,
        adaptive_key: float = 0,
        silence_front: float = 0,
    ) -> tuple[torch.Tensor, int]:
        """Re-synthesise ``audio`` from its mel spectrogram and ``f0``.

        Args:
            audio: (1, T) waveform at ``sample_rate``.
            sample_rate: rate of ``audio``.
            f0: (1, n_frames, 1) Hz at ``hop_size`` samples per frame (unvoiced frames interpolated,
                as the synthesizer's F0); any shape holding n_frames values is accepted.
            hop_size: frame hop of ``f0`` in samples at ``sample_rate``.
            adaptive_key: semitones to raise the vocoder's working range by (0: none).
            silence_front: seconds at the start left out (returned as zeros), rounded down to whole frames.
        Returns:
            (audio (1, T') at the vocoder's rate, that rate).
        """
        device = self.mel.window.device
        audio = audio.reshape(1, -1).to(device=device, dtype=torch.float32)
        f0 = f0.reshape(-1).detach().to("cpu", torch.float64).numpy()
        start_frame = int(silence_front * sample_rate / hop_size)
        audio = audio[:, start_frame * hop_size :]
        f0 = f0[start_frame:]
        if f0.size == 0 or audio.size(-1) == 0:
            raise ValueError(
                f"nothing to enhance: silence_front={silence_front} s leaves no audio or F0 "
                f"({audio.size(-1)} samples, {f0.size} frames)"
            )

        adaptive_rate = 100 * int(np.round(self.sample_rate * 2 ** (adaptive_key / 12) / 100))
        real_factor = self.sample_rate / adaptive_rate
        audio = self._resample(audio, sample_rate, adaptive_rate)

        # F0 on the vocoder's frames. The vocoder plays the resampled audio at its own rate, so input time
        # runs 1 / real_factor as fast there and every pitch is real_factor times its input value.
        n_frames = audio.size(-1) // self.hop_size + 1
        f0 = f0 * real_factor
        t_in = (hop_size / sample_rate) * np.arange(f0.size) / real_factor
        t_out = (self.hop_size / self.sample_rate) * np.arange(n_frames)
        f0 = np.interp(t_out, t_in, f0, left=f0[0], right=f0[-1])
        f0 = torch.from_numpy(f0).to(device=device, dtype=torch.float32).unsqueeze(0)

        mel = self.mel(audio)
        out = self.vocoder(mel, f0[:, : mel.size(-1)]).reshape(1, -1)
        out = self._resample(out, adaptive_rate, self.sample_rate)
        if start_frame > 0:
            out = F.pad(out, (int(np.round(self.sample_rate * start_frame * hop_size / sample_rate)), 0))
        return out, self.sample_rate
