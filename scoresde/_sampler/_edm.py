import math

import jax.numpy as jnp
import jax.random as jr

from .._checks import is_real, static_number
from .._custom_types import Array, Data, Float, PRNGKeyArray, Scalar
from .._numerics import normal
from .._sde import AbstractLinearSDE, AbstractSDE
from ._base import (
    AbstractSampler,
    check_eps,
    check_finite,
    check_num,
    initial_state,
    make_stats,
    nearest_steps,
    resolve_eps,
    scan_with_snapshots,
    ScoreFn,
    split2,
    Stats,
)
from ._grid import check_grid, EDMGrid


class EDMSampler(AbstractSampler):
    r"""Karras et al.'s (2022) stochastic sampler (their Algorithm 2): Heun's method on
    the probability-flow ODE in the noise level $\sigma$, with optional "churn" (noise
    added before each step), on any linear SDE.

    In $\bar x = x/m(t)$ and $\sigma(t) = s(t)/m(t)$ the probability-flow ODE of a linear
    SDE is EDM's $\mathrm d\bar x/\mathrm d\sigma = (\bar x - D(\bar x; \sigma))/\sigma$
    with the denoiser $D(\bar x; \sigma) = \hat x_0 = (x + s^2\nabla\log p_t(x))/m$ at
    $x = m\bar x$. The steps follow EDM's grid (`rho`) from $\sigma(T)$ to
    $\sigma(\epsilon)$ and end with an Euler step to $\sigma = 0$, which is one Tweedie
    denoising: `num_steps` steps cost $2\,\text{num\_steps} - 1$ score evaluations (18
    steps, 35 evaluations, as in the paper), and the result is the denoised sample at
    $t = 0$. Step $i$ first raises the noise to $\hat\sigma_i = \sigma_i(1 + \gamma_i)$
    with $\gamma_i = \min(S_\text{churn}/n, \sqrt2 - 1)$ when
    $S_\text{tmin} \le \sigma_i \le S_\text{tmax}$ (else 0), by adding
    $\sqrt{\hat\sigma_i^2 - \sigma_i^2}\,S_\text{noise}\,z$; with `s_churn=0` (default)
    the sampler is deterministic.

    **Arguments:**

    - `num_steps`: $n \ge 2$ (default 18).
    - `s_churn`, `s_tmin`, `s_tmax`, `s_noise`: EDM's stochasticity (defaults 0, 0,
      $\infty$, 1), in units of $\sigma$.
    - `rho`: the grid's exponent (default 7).
    - `eps`: the last nonzero time (default: the SDE's `default_eps`).

    ??? cite "Reference"

        ```bibtex
        @inproceedings{karras2022elucidating,
          title={Elucidating the Design Space of Diffusion-Based Generative Models},
          author={Karras, Tero and Aittala, Miika and Aila, Timo and Laine, Samuli},
          booktitle={NeurIPS}, year={2022}
        }
        ```
    """

    num_steps: int = static_number(default=18)
    s_churn: float = static_number(default=0.0)
    s_tmin: float = static_number(default=0.0)
    s_tmax: float = static_number(default=float("inf"))
    s_noise: float = static_number(default=1.0)
    rho: float = static_number(default=7.0)
    eps: float | None = static_number(default=None)

    def __check_init__(self):
        check_num("num_steps", self.num_steps, minimum=2)
        for name in ("s_churn", "s_tmin", "s_noise", "rho"):
            check_finite(name, getattr(self, name))
        for name in ("s_churn", "s_tmin", "s_noise"):
            value = getattr(self, name)
            if not (is_real(value) and value >= 0):
                raise ValueError(f"`{name}` must be a number >= 0, got {value!r}.")
        if not (is_real(self.s_tmax) and self.s_tmax >= self.s_tmin):
            raise ValueError(f"`s_tmax` must be >= `s_tmin`, got {self.s_tmax!r}.")
        if not (is_real(self.rho) and self.rho > 0):
            raise ValueError(f"`rho` must be > 0, got {self.rho!r}.")

    def check(self, sde: AbstractSDE) -> None:
        if not isinstance(sde, AbstractLinearSDE):
            raise TypeError(
                f"EDMSampler works in the noise level s(t)/m(t) of a linear SDE (VPSDE, "
                f"SubVPSDE, VESDE); {type(sde).__name__} is not one."
            )
        check_eps(sde, self.eps)
        check_grid(EDMGrid(self.rho), sde, self.num_steps - 1, resolve_eps(sde, self.eps))

    def clock(self, sde: AbstractSDE) -> Float[Array, " n+1"]:
        """The times of EDM's grid from $T$ to $\\epsilon$, then 0 (the denoised end)."""
        ts = EDMGrid(self.rho).times(sde, self.num_steps - 1, resolve_eps(sde, self.eps))
        return jnp.concatenate([ts, jnp.zeros((1,), ts.dtype)])

    def sample_one(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        key: PRNGKeyArray,
        save_ts: Float[Array, " k"] | None,
        initial: Data | None = None,
    ) -> tuple[Data, Float[Array, "k *data"] | None, Stats]:
        assert isinstance(sde, AbstractLinearSDE)
        n = self.num_steps
        key_prior, key_steps = split2(key)
        ts = self.clock(sde)
        sigmas = sde.sigma(ts[:-1])
        x_T = initial_state(sde, key_prior, data_shape, initial=initial)
        gamma_max = min(self.s_churn / n, math.sqrt(2.0) - 1.0)

        def denoise(t: Scalar, xbar: Data) -> Data:
            m = sde.mean_coeff(t).astype(xbar.dtype)
            x = m * xbar
            return (x + (sde.std(t) ** 2).astype(x.dtype) * score(t, x)) / m

        def churn(i, xbar):
            """(x̂, σ̂, t̂): the state with its noise raised by the churn of step i."""
            sigma, t = sigmas[i], ts[i]
            if gamma_max == 0.0:
                return xbar, sigma, t
            on = (sigma >= self.s_tmin) & (sigma <= self.s_tmax)
            gamma = jnp.where(on, gamma_max, 0.0)
            sigma_hat = sigma * (1 + gamma)
            z = normal(jr.fold_in(key_steps, i), xbar.shape, xbar.dtype)
            extra = jnp.sqrt(sigma_hat**2 - sigma**2) * self.s_noise
            t_hat = jnp.where(on, sde.t_from_sigma(sigma_hat), t)
            return xbar + extra.astype(xbar.dtype) * z, sigma_hat, t_hat

        def heun(i, xbar):
            x_hat, sigma_hat, t_hat = churn(i, xbar)
            d = (x_hat - denoise(t_hat, x_hat)) / sigma_hat.astype(x_hat.dtype)
            sigma_next, t_next = sigmas[i + 1], ts[i + 1]
            dsigma = (sigma_next - sigma_hat).astype(x_hat.dtype)
            x_euler = x_hat + dsigma * d
            d_next = (x_euler - denoise(t_next, x_euler)) / sigma_next.astype(x_hat.dtype)
            return x_hat + dsigma * 0.5 * (d + d_next)

        xbar0 = x_T / sde.mean_coeff(ts[0]).astype(x_T.dtype)
        save_steps = None if save_ts is None else nearest_steps(ts, save_ts)
        # n - 1 Heun steps on the grid, then the Euler step to σ = 0: x̂ - σ̂ d = D(x̂; σ̂).
        inner = None if save_steps is None else jnp.minimum(save_steps, n - 1)
        xbar, traj = scan_with_snapshots(heun, xbar0, n - 1, inner)
        x_hat, _, t_hat = churn(n - 1, xbar)
        x = denoise(t_hat, x_hat)
        if traj is not None:
            m = sde.mean_coeff(ts[save_steps]).reshape((-1,) + (1,) * len(data_shape))
            traj = traj * m.astype(traj.dtype)
            last = (save_steps == n).reshape(m.shape)
            traj = jnp.where(last, x[None], traj)
        return x, traj, make_stats(n, 0, 2 * n - 1)
