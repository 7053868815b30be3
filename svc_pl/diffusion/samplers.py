"""Reverse-diffusion samplers of so-vits-svc 4.1, written from the papers and checked against upstream's numbers.

All samplers take ``eps_fn(x, step) -> noise`` (x: (B, M, T) normalised mel, step: (B,) float model step) and the
noisy start ``x`` at step ``n_steps - 1`` of a linear-beta schedule, and return the denoised (B, M, T) sample.

Why our own code and not ``diffusers``' schedulers: upstream's DPM-Solver/UniPC run on the continuous-time
extension of the (truncated) discrete schedule and hand the network *fractional* steps
(``linspace(N - 1, 0, steps + 1)``, with log-alphas interpolated in between) and stop at step 0 rather than at
a clean sample; ``diffusers`` works on integer steps, and its DDIM/PNDM end with another final alpha. Each gives
other mels than the checkpoints were tuned with (see the README section "Shallow diffusion (model)").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# One generator for the batch, or one per row (each row then draws what it would draw alone), or None (global).
Generators = torch.Generator | Sequence[torch.Generator] | None


def normal_noise(shape: tuple[int, ...], generator: Generators, device: torch.device,
                 transposed: bool = False) -> torch.Tensor:
    """Standard normal noise of ``shape`` (B, M, T), drawn on the generator's device and moved to ``device``.

    With one generator per row, row i holds the numbers a one-row draw from generator i gives, so a clip's
    noise does not depend on what else shares its batch (on CPU and CUDA alike). ``transposed``: fill a (B, T, M)
    tensor and return its (B, M, T) view, the layout upstream draws shallow-diffusion noise into (a strided
    tensor is filled in another order on CPU).
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        gens = list(generator)
        if len(gens) != shape[0]:
            raise ValueError(f"{len(gens)} generators for a batch of {shape[0]}")
        return torch.cat([normal_noise((1, *shape[1:]), g, device, transposed) for g in gens])
    where = generator.device if generator is not None else device  # a CPU generator may drive a GPU run
    if transposed:
        noise = torch.empty((shape[0], shape[2], shape[1]), device=where).transpose(1, 2)
        noise.normal_(generator=generator)
    else:
        noise = torch.randn(shape, generator=generator, device=where)
    return noise.to(device, torch.float32)


def _step(i: int | float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), float(i), device=x.device)


def ddpm(eps_fn: EpsFn, x: torch.Tensor, n_steps: int, buffers: dict[str, torch.Tensor],
         generator: Generators = None) -> torch.Tensor:
    """Ancestral DDPM sampling over every step ``n_steps - 1 .. 0`` (Ho et al. 2020), x0 clipped to [-1, 1].

    ``buffers`` holds the diffusion's ``sqrt_recip_alphas_cumprod``, ``sqrt_recipm1_alphas_cumprod``,
    ``posterior_mean_coef1/2`` and ``posterior_log_variance_clipped``. Noise is drawn at every step (also the last,
    where it is not used) so a seeded generator reproduces upstream's stream of random numbers.
    """
    for i in reversed(range(n_steps)):
        eps = eps_fn(x, _step(i, x))
        x0 = buffers["sqrt_recip_alphas_cumprod"][i] * x - buffers["sqrt_recipm1_alphas_cumprod"][i] * eps
        x0 = x0.clamp(-1, 1)
        mean = buffers["posterior_mean_coef1"][i] * x0 + buffers["posterior_mean_coef2"][i] * x
        noise = normal_noise(tuple(x.shape), generator, x.device).to(x)
        x = mean + noise * (0.5 * buffers["posterior_log_variance_clipped"][i]).exp() if i > 0 else mean
    return x


def _strided(n_steps: int, speedup: int) -> list[int]:
    return list(reversed(range(0, n_steps, speedup)))


def ddim(eps_fn: EpsFn, x: torch.Tensor, n_steps: int, speedup: int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM (Song et al. 2021, eta = 0) on steps ``..., 2s, s, 0``; the last step lands on
    ``alphas_cumprod[0]`` as upstream's does."""
    for i in _strided(n_steps, speedup):
        a_t, a_prev = alphas_cumprod[i], alphas_cumprod[max(i - speedup, 0)]
        eps = eps_fn(x, _step(i, x))
        x = a_prev.sqrt() * (x / a_t.sqrt() + (((1 - a_prev) / a_prev).sqrt() - ((1 - a_t) / a_t).sqrt()) * eps)
    return x


def pndm(eps_fn: EpsFn, x: torch.Tensor, n_steps: int, speedup: int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Pseudo linear multistep (PLMS, Liu et al. 2022): a Heun-like first step, then Adams-Bashforth on the
    predicted noise of up to the last four steps."""

    def transfer(x: torch.Tensor, eps: torch.Tensor, i: int) -> torch.Tensor:  # x at step i -> step i - speedup
        a_t, a_prev = alphas_cumprod[i], alphas_cumprod[max(i - speedup, 0)]
        s_t, s_prev = a_t.sqrt(), a_prev.sqrt()
        coef_x = 1 / (s_t * (s_t + s_prev))
        coef_eps = 1 / (s_t * (((1 - a_prev) * a_t).sqrt() + ((1 - a_t) * a_prev).sqrt()))
        return x + (a_prev - a_t) * (coef_x * x - coef_eps * eps)

    history: list[torch.Tensor] = []
    for i in _strided(n_steps, speedup):
        eps = eps_fn(x, _step(i, x))
        if not history:
            eps_next = eps_fn(transfer(x, eps, i), _step(max(i - speedup, 0), x))
            eps_prime = (eps + eps_next) / 2
        elif len(history) == 1:
            eps_prime = (3 * eps - history[-1]) / 2
        elif len(history) == 2:
            eps_prime = (23 * eps - 16 * history[-1] + 5 * history[-2]) / 12
        else:
            eps_prime = (55 * eps - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
        x = transfer(x, eps_prime, i)
        history = (history + [eps])[-3:]
    return x


class ContinuousVPSchedule:
    """The discrete schedule ``betas`` (N steps) seen as continuous time t in [1/N, 1], log-alpha interpolated
    linearly between the steps (the DPM-Solver convention for discrete-time models).

    Args:
        betas: (N,) betas of the steps used (upstream passes the first ``k_step``).
        clip_lambda: drop the tail whose half-log-SNR is below this (DPM-Solver does, UniPC does not).
    """

    def __init__(self, betas: torch.Tensor, clip_lambda: float | None = None):
        log_alpha = 0.5 * torch.log(1 - betas.float()).cumsum(0)
        if clip_lambda is not None:
            lam = log_alpha - 0.5 * torch.log(1 - torch.exp(2 * log_alpha))
            cut = int(torch.searchsorted(lam.flip(0), torch.tensor(clip_lambda, device=lam.device)))
            if cut > 0:
                log_alpha = log_alpha[:-cut]
        self.n = log_alpha.shape[0]
        self.log_alpha = log_alpha
        self.t_grid = torch.linspace(0.0, 1.0, self.n + 1, device=betas.device)[1:]

    def log_alpha_at(self, t: torch.Tensor) -> torch.Tensor:
        """log alpha_t of a 0-dim time t (linear between grid points, extended beyond them)."""
        k = int(torch.searchsorted(self.t_grid, t.reshape(1)).clamp(1, self.n - 1))
        t0, t1 = self.t_grid[k - 1], self.t_grid[k]
        y0, y1 = self.log_alpha[k - 1], self.log_alpha[k]
        return y0 + (t - t0) * (y1 - y0) / (t1 - t0)

    def at(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log alpha, alpha, sigma, lambda) at time t."""
        log_alpha = self.log_alpha_at(t)
        sigma = torch.sqrt(1 - torch.exp(2 * log_alpha))
        return log_alpha, log_alpha.exp(), sigma, log_alpha - torch.log(sigma)

    def times(self, steps: int) -> torch.Tensor:
        """Uniform times from 1 down to 1/N, ``steps + 1`` of them."""
        return torch.linspace(1.0, 1.0 / self.n, steps + 1, device=self.log_alpha.device)

    def model_step(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The (fractional) network step of time t, as a (B,) tensor."""
        return ((t - 1.0 / self.n) * self.n).expand(x.shape[0])


def dpm_solver(eps_fn: EpsFn, x: torch.Tensor, betas: torch.Tensor, steps: int, plus: bool) -> torch.Tensor:
    """Multistep second-order DPM-Solver (Lu et al. 2022), or DPM-Solver++ with ``plus`` (data prediction),
    on uniform times; first-order start and, below 10 steps, a first-order final step."""
    sched = ContinuousVPSchedule(betas, clip_lambda=-5.1)
    times = sched.times(steps)
    order = min(2, steps)

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = eps_fn(x, sched.model_step(t, x))
        if not plus:
            return eps
        _, alpha, sigma, _ = sched.at(t)
        return (x - sigma * eps) / alpha

    history = [(times[0], model(x, times[0]))]
    for step in range(1, steps + 1):
        t = times[step]
        step_order = min(order, step, steps + 1 - step) if steps < 10 else min(order, step)
        s, m_s = history[-1]
        log_a_t, alpha_t, sigma_t, lam_t = sched.at(t)
        log_a_s, _, sigma_s, lam_s = sched.at(s)
        h = lam_t - lam_s
        if step_order == 2:
            s1, m_s1 = history[-2]
            d1 = (m_s - m_s1) * (h / (lam_s - sched.at(s1)[3]))
        else:
            d1 = torch.zeros_like(m_s)
        if plus:
            phi = torch.expm1(-h)
            x = (sigma_t / sigma_s) * x - (alpha_t * phi) * m_s - 0.5 * (alpha_t * phi) * d1
        else:
            phi = torch.expm1(h)
            x = torch.exp(log_a_t - log_a_s) * x - (sigma_t * phi) * m_s - 0.5 * (sigma_t * phi) * d1
        if step < steps:
            history = (history + [(t, model(x, t))])[-2:]
    return x


def unipc(eps_fn: EpsFn, x: torch.Tensor, betas: torch.Tensor, steps: int) -> torch.Tensor:
    """Multistep UniPC (Zhao et al. 2023), B(h) = e^h - 1 ("bh2"), data prediction, order 2 on uniform times:
    predictor UniP plus corrector UniC that reuses the network call at the predicted point; first order at the
    start and at the last step, no corrector at the last step."""
    sched = ContinuousVPSchedule(betas)
    times = sched.times(steps)

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _, alpha, sigma, _ = sched.at(t)
        return (x - sigma * eps_fn(x, sched.model_step(t, x))) / alpha

    history = [(times[0], model(x, times[0]))]
    for step in range(1, steps + 1):
        t = times[step]
        order = min(2, step, steps + 1 - step)
        use_corrector = step < steps
        s, m_s = history[-1]
        _, alpha_t, sigma_t, lam_t = sched.at(t)
        _, _, sigma_s, lam_s = sched.at(s)
        hh = -(lam_t - lam_s)
        b_h = torch.expm1(hh)
        phi_2 = b_h / hh - 1  # h*phi_2 / h recursion of the B(h) family
        b1 = phi_2 / b_h
        x_lin = (sigma_t / sigma_s) * x - alpha_t * b_h * m_s
        if order == 2:
            s1, m_s1 = history[-2]
            rk = (sched.at(s1)[3] - lam_s) / (lam_t - lam_s)
            d1 = (m_s1 - m_s) / rk
            x_new = x_lin - alpha_t * b_h * (0.5 * d1)
        else:
            x_new = x_lin
        m_new = None
        if use_corrector:
            m_new = model(x_new, t)
            d1_t = m_new - m_s
            if order == 2:
                b2 = (phi_2 / hh - 0.5) * 2 / b_h
                rho0 = (b1 - b2) / (1 - rk)  # solves [[1, 1], [rk, 1]] @ rho = [b1, b2]
                x_new = x_lin - alpha_t * b_h * (rho0 * d1 + (b1 - rho0) * d1_t)
            else:
                x_new = x_lin - alpha_t * b_h * (0.5 * d1_t)
        x = x_new
        if step < steps:
            history = (history + [(t, m_new)])[-2:]
    return x
