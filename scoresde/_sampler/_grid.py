"""Time grids for fixed-step samplers: where the steps from T down to eps fall."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_finite, describe, static_number
from .._custom_types import Array, Float
from .._sde import AbstractLinearSDE, AbstractSDE
from .._sde._base import _concrete


class AbstractTimeGrid(eqx.Module):
    """Places `num_steps + 1` times from $T$ down to $\\epsilon$ (strictly decreasing):
    where a fixed-step sampler (`grid=`) evaluates the score.

    A subclass provides `times(sde, num_steps, eps)`, returning the grid
    $T = t_0 > t_1 > \\dots > t_n = \\epsilon$ as an array of shape `(num_steps + 1,)`,
    with both ends exact (the samplers start at `sde.T` and stop at `eps`). It runs at
    trace time on static `num_steps` and `eps`, so it may use NumPy or raise a
    `TypeError` for an SDE it cannot place steps on (a grid in the noise level needs an
    [`AbstractLinearSDE`][scoresde.AbstractLinearSDE]). Hyperparameters that are not
    arrays are `eqx.field(static=True)`. See
    [Extending scoresde](../extending.md#your-own-time-grid) for an example.
    """

    @abc.abstractmethod
    def times(self, sde: AbstractSDE, num_steps: int, eps: float) -> Float[Array, " num_steps+1"]:
        """The grid $T = t_0 > t_1 > \\dots > t_n = \\epsilon$."""


def _pin_ends(ts: Array, sde: AbstractSDE, eps: float) -> Array:
    # Inverting sigma(t) in floating point can miss the ends by an ulp; the ends must be exact.
    return ts.at[0].set(sde.T).at[-1].set(eps)


def _require_linear(grid: AbstractTimeGrid, sde: AbstractSDE) -> AbstractLinearSDE:
    if not isinstance(sde, AbstractLinearSDE):
        raise TypeError(
            f"{type(grid).__name__} places steps by the noise level s(t)/m(t), which only a "
            f"linear SDE has; {type(sde).__name__} is not one. Use UniformGrid()."
        )
    return sde


def check_grid(grid: AbstractTimeGrid, sde: AbstractSDE, num_steps: int, eps: float) -> None:
    r"""Builds the grid once, outside jit, and raises if a time is NaN or inf or the times
    do not strictly decrease from T to eps, naming the grid, the SDE's constants and the
    cause: otherwise the solve runs on NaN times and the NaN samples are blamed on the
    score. The usual cause is a grid placed in the noise-to-signal ratio
    $\sigma(t) = s(t)/m(t)$ (EDM, log-SNR) of an SDE whose $\sigma(T)$ overflows float32
    (`VPSDE(beta_max=1000)`: $\sigma(T)^2 = e^{500} - 1$)."""
    if not _concrete(*(v for v in vars(sde).values() if isinstance(v, jax.Array))):
        return
    ts = grid.times(sde, num_steps, eps)
    if isinstance(ts, jax.core.Tracer):  # `sample` called inside the user's own jit
        return
    ts = np.asarray(ts, dtype=np.float64)
    bad = ~np.isfinite(ts)
    if not bad.any() and np.all(np.diff(ts) < 0):
        return
    what = f"{type(grid).__name__} with {num_steps} steps on {describe(sde)}"
    if isinstance(sde, AbstractLinearSDE):
        dtype = jnp.result_type(float).name
        for end, t in (("T", float(sde.T)), ("eps", float(eps))):
            ratio = float(sde.sigma(t))
            if not (np.isfinite(ratio) and ratio > 0):
                raise ValueError(
                    f"{what} gives {int(bad.sum())} of {ts.size} step times NaN or inf: the "
                    f"SDE's noise-to-signal ratio s(t)/m(t) at t = {end} is {ratio:g} in "
                    f"{dtype}; choose SDE constants that keep it finite (for a VP or sub-VP "
                    "SDE, integrated beta over [0, T] below ~88: a smaller beta_max or T), or "
                    "use UniformGrid(), which places steps in t."
                )
    if bad.any():
        raise ValueError(
            f"{what} gives {int(bad.sum())} of {ts.size} step times NaN or inf; use "
            "UniformGrid(), or SDE constants for which the grid is finite."
        )
    first = int(np.argmax(np.diff(ts) >= 0))
    raise ValueError(
        f"{what} does not strictly decrease from T to eps (step {first}: t = {ts[first]:g} "
        f"then {ts[first + 1]:g}): the steps are finer than float32 resolves there; use "
        "fewer steps or UniformGrid()."
    )


class UniformGrid(AbstractTimeGrid):
    """Steps of equal length in $t$ (Song et al. 2021)."""

    def times(self, sde: AbstractSDE, num_steps: int, eps: float) -> Array:
        return jnp.linspace(sde.T, eps, num_steps + 1)


class EDMGrid(AbstractTimeGrid):
    r"""Karras et al.'s (2022) polynomial grid in the noise level $\sigma = s(t)/m(t)$:

    $$\sigma_i = \Big(\sigma_{\max}^{1/\rho} + \tfrac{i}{n}\big(\sigma_{\min}^{1/\rho} -
    \sigma_{\max}^{1/\rho}\big)\Big)^{\rho},$$

    mapped back to times with the SDE's `t_from_sigma`. Larger $\rho$ puts more steps at
    low noise; $\rho = 7$ is EDM's choice. Needs a linear SDE.

    **Arguments:**

    - `rho`: the grid's exponent $\rho > 0$ (default 7).

    ??? cite "Reference"

        ```bibtex
        @inproceedings{karras2022elucidating,
          title={Elucidating the Design Space of Diffusion-Based Generative Models},
          author={Karras, Tero and Aittala, Miika and Aila, Timo and Laine, Samuli},
          booktitle={NeurIPS}, year={2022}
        }
        ```
    """

    rho: float = static_number(default=7.0)

    def __check_init__(self):
        check_finite("rho", self.rho)
        if not self.rho > 0:
            raise ValueError(f"`rho` must be > 0, got {self.rho}.")

    def times(self, sde: AbstractSDE, num_steps: int, eps: float) -> Array:
        sde = _require_linear(self, sde)
        lo, hi = sde.sigma(eps) ** (1 / self.rho), sde.sigma(sde.T) ** (1 / self.rho)
        frac = jnp.linspace(0.0, 1.0, num_steps + 1)
        sigmas = (hi + frac * (lo - hi)) ** self.rho
        return _pin_ends(sde.t_from_sigma(sigmas), sde, eps)


class LogSNRGrid(AbstractTimeGrid):
    r"""Steps of equal length in the log signal-to-noise ratio
    $\lambda(t) = \log(m(t)^2/s(t)^2)$ (as in DPM-Solver)."""

    def times(self, sde: AbstractSDE, num_steps: int, eps: float) -> Array:
        sde = _require_linear(self, sde)
        lambdas = jnp.linspace(sde.log_snr(sde.T), sde.log_snr(eps), num_steps + 1)
        return _pin_ends(sde.t_from_sigma(jnp.exp(-0.5 * lambdas)), sde, eps)
