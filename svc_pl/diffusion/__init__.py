"""Shallow diffusion: the so-vits-svc 4.1 mel diffusion model (``Unit2Mel``) and its samplers.

- :class:`~svc_pl.diffusion.model.MelDiffusion`: units/F0/volume/speaker -> mel (training loss and ``infer``), and
  :class:`~svc_pl.diffusion.model.DiffusionConfig`: its architecture (a config's ``model.diffusion``)
- :class:`~svc_pl.diffusion.gaussian.GaussianDiffusion`: schedule, loss, sampling
- :mod:`~svc_pl.diffusion.samplers`: DDPM, DDIM, PNDM, DPM-Solver(++), UniPC

Upstream checkpoints load with :func:`svc_pl.compat.load_sovits_diffusion`.
"""

from svc_pl.diffusion.gaussian import METHODS, GaussianDiffusion
from svc_pl.diffusion.model import DiffusionConfig, MelDiffusion

__all__ = ["METHODS", "DiffusionConfig", "GaussianDiffusion", "MelDiffusion"]
