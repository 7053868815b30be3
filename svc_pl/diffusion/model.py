"""The shallow-diffusion mel model (upstream: ``diffusion/unit2mel.py::Unit2Mel``).

Content units, F0, volume, speaker (and, with pitch augmentation, the key shift) are embedded into one frame-level
condition; a WaveNet denoiser inside a Gaussian diffusion turns noise, or a synthesizer's mel noised to a shallow
depth, into a mel for the NSF-HiFiGAN vocoder.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from svc_pl.diffusion.gaussian import METHODS, GaussianDiffusion, Method
from svc_pl.diffusion.samplers import Generators
from svc_pl.layers.diffusion import WaveNetDenoiser

LOG = logging.getLogger(__name__)

Speaker = int | torch.Tensor | Mapping[int, float] | None


@dataclass
class DiffusionConfig:
    """The diffusion model's architecture: everything about it that the data does not decide (the unit size, the
    speakers and the vocoder's mel bins do). The defaults are :class:`MelDiffusion`'s: so-vits-svc 4.1's
    ``diffusion_template.yaml`` sizes, with pitch augmentation off unless asked for (the shipped config asks). This
    is the ``model.diffusion`` block of a diffusion training config and of its checkpoint's ``hyper_parameters``;
    the fields are :class:`MelDiffusion`'s arguments of the same names.
    """

    n_layers: int = 20
    n_chans: int = 512
    n_hidden: int = 256
    timesteps: int = 1000
    k_step_max: int = 0
    use_pitch_aug: bool = False
    max_beta: float = 0.02
    spec_min: float = -12.0
    spec_max: float = 2.0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | DiffusionConfig | None) -> DiffusionConfig:
        """A config from a ``diffusion`` mapping (a YAML block, a checkpoint's hyper-parameters); keys not given keep
        their defaults. Raises :class:`~svc_pl.errors.ConfigError` naming any key that is not a setting."""
        if isinstance(values, DiffusionConfig):
            return values
        values = dict(values or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            from svc_pl.errors import ConfigError

            raise ConfigError(f"model.diffusion: unknown key(s) {unknown}; allowed: {', '.join(names)}")
        return cls(**{k: copy.deepcopy(v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def build(self, unit_dim: int, n_speakers: int, n_mels: int) -> MelDiffusion:
        """The model these settings describe, for ``unit_dim``-d units, ``n_speakers`` and ``n_mels`` mel bins."""
        return MelDiffusion(unit_dim=unit_dim, n_speakers=n_speakers, n_mels=n_mels, **self.to_dict())


class MelDiffusion(nn.Module):
    """Units/F0/volume/speaker -> mel by diffusion; so-vits-svc 4.1 ``Unit2Mel`` state-dict layout.

    Args:
        unit_dim: content-unit size D (upstream ``data.encoder_out_channels``).
        n_speakers: speakers (upstream ``model.n_spk``); 1 has no speaker table.
        use_pitch_aug: embed the key shift of pitch-shift augmentation (``aug_shift_embed``).
        n_mels: mel bins M (the vocoder's).
        n_layers: WaveNet blocks.
        n_chans: WaveNet residual channels.
        n_hidden: condition size H.
        timesteps: diffusion steps of the schedule.
        k_step_max: steps trained (0: all); a model with ``0 < k_step_max < timesteps`` only does shallow diffusion.
        max_beta: last beta of the linear schedule.
        spec_min: mel value mapped to -1.
        spec_max: mel value mapped to 1.
    """

    def __init__(self, unit_dim: int = 768, n_speakers: int = 1, use_pitch_aug: bool = False, n_mels: int = 128,
                 n_layers: int = 20, n_chans: int = 512, n_hidden: int = 256, timesteps: int = 1000,
                 k_step_max: int = 0, max_beta: float = 0.02, spec_min: float = -12.0, spec_max: float = 2.0):
        super().__init__()
        if not 0 <= k_step_max <= timesteps:
            raise ValueError(f"k_step_max must be in [0, timesteps={timesteps}], got {k_step_max}")
        self.unit_dim = unit_dim
        self.n_speakers = n_speakers
        self.n_mels = n_mels
        self.unit_embed = nn.Linear(unit_dim, n_hidden)
        self.f0_embed = nn.Linear(1, n_hidden)
        self.volume_embed = nn.Linear(1, n_hidden)
        self.aug_shift_embed = nn.Linear(1, n_hidden, bias=False) if use_pitch_aug else None
        if n_speakers > 1:
            self.spk_embed = nn.Embedding(n_speakers, n_hidden)
        self.decoder = GaussianDiffusion(WaveNetDenoiser(n_mels, n_layers, n_chans, n_hidden), n_mels=n_mels,
                                         timesteps=timesteps, k_step_max=k_step_max, max_beta=max_beta,
                                         spec_min=spec_min, spec_max=spec_max)

    @property
    def timesteps(self) -> int:
        return self.decoder.num_timesteps

    @property
    def k_step_max(self) -> int:
        """Deepest step the model was trained on (``timesteps`` for a full model)."""
        return self.decoder.k_step

    @property
    def shallow_only(self) -> bool:
        """True when the model cannot generate from pure noise (trained with a smaller ``k_step_max``)."""
        return self.decoder.k_step < self.decoder.num_timesteps

    def condition(self, units: torch.Tensor, f0: torch.Tensor, volume: torch.Tensor, speaker: Speaker = None,
                  aug_shift: torch.Tensor | float | None = None) -> torch.Tensor:
        """Frame-level condition.

        Args:
            units: (B, N, D) content units.
            f0: (B, N, 1) F0 in Hz (0 where unvoiced).
            volume: (B, N, 1) frame volume.
            speaker: with several speakers: an id (int, or (B,) / (B, 1) long tensor), a mix ``{id: weight}``
                (weights used as given), or a time-varying map, (B, N, S) or (N, S) float weights per frame.
                Ignored by a single-speaker model.
            aug_shift: key shift in semitones, float or (B,) / (B, 1) / (B, 1, 1) / (B, N, 1); used only with
                ``use_pitch_aug``.

        Returns:
            (B, H, N) condition.
        """
        x = self.unit_embed(units) + self.f0_embed(torch.log1p(f0 / 700)) + self.volume_embed(volume)
        if self.n_speakers > 1:
            x = x + self._speaker_embedding(speaker, x)
        if self.aug_shift_embed is not None and aug_shift is not None:
            shift = torch.as_tensor(aug_shift, dtype=x.dtype, device=x.device)
            shift = shift.reshape(-1, 1, 1) if shift.dim() < 3 else shift
            x = x + self.aug_shift_embed(shift / 5)
        return x.transpose(1, 2)

    def _speaker_embedding(self, speaker: Speaker, x: torch.Tensor) -> torch.Tensor:
        table = self.spk_embed.weight
        if speaker is None:
            raise ValueError(f"this diffusion model has {self.n_speakers} speakers: pass a speaker id, mix or map")
        if isinstance(speaker, Mapping):
            bad = [k for k in speaker if not 0 <= int(k) < self.n_speakers]
            if bad:
                raise ValueError(f"speaker ids {bad} out of range: the model has {self.n_speakers} speakers")
            return sum(float(w) * table[int(k)] for k, w in speaker.items()).view(1, 1, -1)
        speaker = torch.as_tensor(speaker, device=x.device)
        if speaker.is_floating_point():  # time-varying weights per frame and speaker
            weights = speaker.unsqueeze(0) if speaker.dim() == 2 else speaker
            if weights.shape[-1] != self.n_speakers or weights.shape[-2] != x.shape[1]:
                raise ValueError(f"speaker map has shape {tuple(speaker.shape)}; expected (B, N={x.shape[1]}, "
                                 f"S={self.n_speakers}) or (N, S)")
            return weights.to(x.dtype) @ table
        ids = speaker.reshape(-1).long()
        if ids.numel() not in (1, x.shape[0]) or ids.min() < 0 or ids.max() >= self.n_speakers:
            raise ValueError(f"speaker ids {ids.tolist()} do not fit: the model has {self.n_speakers} speakers, "
                             f"the batch {x.shape[0]} items")
        return self.spk_embed(ids).unsqueeze(1)

    def forward(self, units: torch.Tensor, f0: torch.Tensor, volume: torch.Tensor, mel: torch.Tensor,
                speaker: Speaker = None, aug_shift: torch.Tensor | float | None = None, t: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """Training loss (noise MSE at a random step below ``k_step_max``).

        Args:
            units, f0, volume, speaker, aug_shift: as in :meth:`condition`.
            mel: (B, N, M) target mel.
            t: (B,) steps to use instead of random ones.
            noise: (B, M, N) noise to use instead of random noise.

        Returns:
            scalar loss.
        """
        return self.decoder.loss(self.condition(units, f0, volume, speaker, aug_shift), mel, t=t, noise=noise)

    @torch.no_grad()
    def infer(self, units: torch.Tensor, f0: torch.Tensor, volume: torch.Tensor, speaker: Speaker = None,
              gt_mel: torch.Tensor | None = None, k_step: int = 100, method: Method = "dpm-solver++",
              speedup: int = 10, aug_shift: torch.Tensor | float | None = None,
              generator: Generators = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mel by diffusion: shallow (refine ``gt_mel`` from depth ``k_step``) or from noise (``gt_mel`` None).

        Args:
            units: (B, N, D) content units.
            f0: (B, N, 1) F0 in Hz.
            volume: (B, N, 1) volume.
            speaker: see :meth:`condition`.
            gt_mel: (B, N, M) mel to refine (e.g. the synthesizer's output through the vocoder's mel), or None.
            k_step: shallow depth, at most ``k_step_max``; 0 returns ``gt_mel`` unchanged.
            method: ``ddpm``, ``ddim``, ``pndm``, ``dpm-solver``, ``dpm-solver++`` or ``unipc``.
            speedup: step stride / ratio of steps to solver steps; <= 1 runs plain DDPM.
            aug_shift: key shift for a model trained with pitch augmentation (None: no shift term).
            generator: random source (initial noise; DDPM's per-step noise): one, or one per row.
            noise: (B, N, M) initial noise instead of drawing it.

        Returns:
            (B, N, M) mel.
        """
        if method not in METHODS:
            raise ValueError(f"unknown diffusion method {method!r}; choose one of {', '.join(METHODS)}")
        if gt_mel is not None:
            if not 0 <= k_step <= self.k_step_max:
                raise ValueError(f"k_step {k_step} is out of range: this diffusion model was trained up to "
                                 f"k_step_max {self.k_step_max}; use a k_step in [0, {self.k_step_max}]")
            if k_step == 0:
                return gt_mel.clone()
        elif self.shallow_only:
            raise ValueError(f"this diffusion model was trained for shallow diffusion only (k_step_max "
                             f"{self.k_step_max} < timesteps {self.timesteps}); it needs the synthesizer's mel "
                             "(gt_mel) and cannot generate from noise")
        cond = self.condition(units, f0, volume, speaker, aug_shift)
        return self.decoder.sample(cond, gt_mel, k_step=k_step, method=method, speedup=speedup, noise=noise,
                                   generator=generator)
