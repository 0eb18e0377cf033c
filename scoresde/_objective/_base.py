"""The objective interface and the pieces every score-matching loss shares."""

import abc
from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_eps as _check_eps, describe, static_number
from .._condition import bind
from .._custom_types import Array, Batch, Data, Float, PRNGKeyArray, Scalar
from .._numerics import noise_dtype, normal
from .._sde import AbstractLinearSDE, AbstractSDE
from .._sde._base import same_sde, sdes_in


Model = Callable[[Scalar, Data], Data]
Weighting = Literal["std2", "likelihood", "constant"]
TimeSampling = Literal["uniform", "importance"]


class AbstractObjective(eqx.Module):
    """A score-matching loss. Calling the objective on a batch vmaps `loss_one` and takes
    the mean; [`fit`][scoresde.fit] minimises that.

    A subclass provides:

    - `loss_one(model, x, key)`: the loss of ONE data point `x` (no batch axis) with its
      own key, a scalar; `model(t, x)` is the score being trained. Pure JAX: it is
      vmapped, differentiated and jitted.
    - optionally `check(data_shape)`: raise a clear error, before any tracing, if the
      objective cannot train on data of this shape.

    Hyperparameters that are not arrays are `eqx.field(static=True)`; an SDE held by the
    objective is never trained (`fit` filters SDEs out of the parameters).

    The model is any score `model(t, x)` of one sample: a network, or a parameterisation
    such as [`NoisePrediction`][scoresde.NoisePrediction] wrapping one. A conditional
    model `model(t, x, c)` is trained on (data point, condition) pairs: each point's
    condition is bound into the model before `loss_one` sees it, so every objective
    trains conditional models unchanged.
    """

    @abc.abstractmethod
    def loss_one(self, model: Model, x: Data, key: PRNGKeyArray) -> Scalar:
        """The loss of one data point `x` (no batch axis)."""

    def check(self, data_shape: tuple[int, ...]) -> None:
        """Raises a clear error, before any tracing, if the objective cannot train on data
        of this shape."""

    def check_model(self, model: Model) -> None:
        """Raises if `model` holds an SDE (a [`NoisePrediction`][scoresde.NoisePrediction]'s,
        an [`EDMDenoiser`][scoresde.EDMDenoiser]'s) other than the one this objective
        perturbs the data with: the model would learn the score of one SDE and turn its
        network's output into a score with the other. Same class and same constants
        (compared when concrete; under `jit` only the class is known) count as the same."""
        ours = sdes_in(self)
        if not ours:
            return
        for theirs in sdes_in(model):
            if not same_sde(theirs, ours[0]):
                raise ValueError(
                    f"`model` ({type(model).__name__}) is built on {describe(theirs)}, but "
                    f"{type(self).__name__} perturbs the data with {describe(ours[0])}: build "
                    f"both on the same SDE, e.g. `sde = {describe(ours[0])}` passed to the "
                    "model and to the objective."
                )

    def __call__(
        self, model: Model, batch: Batch, key: PRNGKeyArray, condition: Any = None
    ) -> Scalar:
        """The mean loss over a batch; data point `i` uses `fold_in(key, i)` and, for a
        conditional model, its own condition `condition[i]` (a pytree with a leading axis
        of the batch)."""
        self.check_model(model)
        keys = jax.vmap(lambda i: jr.fold_in(key, i))(jnp.arange(batch.shape[0]))
        losses = jax.vmap(lambda x, k, c: self.loss_one(bind(model, c), x, k))(
            batch, keys, condition
        )
        return jnp.mean(losses)


def require_linear(objective: AbstractObjective, sde: AbstractSDE | None) -> None:
    if sde is not None and not isinstance(sde, AbstractLinearSDE):
        raise TypeError(
            f"{type(objective).__name__} perturbs data with the closed-form kernel "
            f"N(m(t) x, s(t)^2 I), which only a linear SDE has; got {type(sde).__name__}."
        )


def check_eps(sde: AbstractSDE, eps: float | None) -> float:
    """`eps` (default: the SDE's) must lie in (0, T); checked outside jit."""
    return _check_eps(sde, eps, "it is the smallest training time")


def weight(sde: AbstractLinearSDE, weighting: Weighting, t: Scalar) -> Scalar:
    r"""$\lambda(t)$: $s(t)^2$ (`"std2"`), $g(t)^2$ (`"likelihood"`) or 1 (`"constant"`)."""
    if weighting == "std2":
        return sde.std(t) ** 2
    if weighting == "likelihood":
        return sde.diffusion(t) ** 2
    return jnp.ones_like(t)


def perturb(
    sde: AbstractLinearSDE, t: Scalar, x: Data, key: PRNGKeyArray
) -> tuple[Data, Data, Scalar]:
    r"""$x_t = m(t)x + s(t)z$; returns $(x_t, z, s(t))$.

    $z$ is drawn in at least float32 and stays so (it is the regression target); $x_t$ is
    rounded to `x`'s dtype, the dtype the model is fed."""
    z = normal(key, x.shape, noise_dtype(x.dtype))
    std = sde.std(t)
    return (sde.mean_coeff(t) * x + std * z).astype(x.dtype), z, std


class TimeDistribution(eqx.Module):
    r"""Draws the training time $t \in [\epsilon, T]$ and the factor that makes every choice
    estimate the same loss $\mathbb E_{t \sim U[\epsilon, T]}[\lambda(t)\,\ell(t)]$.

    - `"uniform"`: $t \sim U[\epsilon, T]$, factor $\lambda(t)/s(t)^2$.
    - `"importance"`: $t \sim q(t) \propto \lambda(t)/s(t)^2$ (Song et al., 2021b), factor
      $\lambda(t)/(s(t)^2 (T-\epsilon) q(t))$, constant in $t$ up to the tabulation, so the
      per-sample loss varies far less. $q$ is tabulated on 4096 log-spaced times (the
      weight grows like $1/t$ near 0); the factor uses the exact density of the piecewise
      linear inverse CDF, so the estimator stays unbiased.

    The factor multiplies $\tfrac12\|s(t)\,\hat s + z\|^2$-style terms, which is why it
    divides by $s(t)^2$.
    """

    sde: AbstractLinearSDE
    weighting: Weighting = eqx.field(static=True)
    time_sampling: TimeSampling = eqx.field(static=True)
    eps: float = static_number()
    grid: Float[Array, " m"] | None
    cdf: Float[Array, " m"] | None

    def __init__(self, sde, weighting, time_sampling, eps):
        if weighting not in ("std2", "likelihood", "constant"):
            raise ValueError(
                f"`weighting` must be 'std2', 'likelihood' or 'constant', got {weighting!r}."
            )
        if time_sampling not in ("uniform", "importance"):
            raise ValueError(
                f"`time_sampling` must be 'uniform' or 'importance', got {time_sampling!r}."
            )
        self.sde, self.weighting, self.time_sampling, self.eps = sde, weighting, time_sampling, eps
        if time_sampling == "importance":
            grid = jnp.geomspace(eps, float(sde.T), 4096)
            w = self._ratio(grid)
            cells = 0.5 * (w[1:] + w[:-1]) * jnp.diff(grid)
            self.grid, self.cdf = grid, jnp.concatenate([jnp.zeros(1), jnp.cumsum(cells)])
        else:
            self.grid = self.cdf = None

    def _ratio(self, t):
        return weight(self.sde, self.weighting, t) / self.sde.std(t) ** 2

    def __call__(self, key: PRNGKeyArray) -> tuple[Scalar, Scalar]:
        """Returns `(t, factor)`."""
        length = self.sde.T - self.eps
        if self.time_sampling == "uniform":
            t = jr.uniform(key, (), minval=self.eps, maxval=self.sde.T)
            return t, self._ratio(t)
        assert self.grid is not None and self.cdf is not None
        u = jr.uniform(key, ()) * self.cdf[-1]
        t = jnp.interp(u, self.cdf, self.grid)
        cell = jnp.clip(jnp.searchsorted(self.cdf, u) - 1, 0, self.grid.shape[0] - 2)
        density = (self.cdf[cell + 1] - self.cdf[cell]) / (
            (self.grid[cell + 1] - self.grid[cell]) * self.cdf[-1]
        )
        return t, self._ratio(t) / (length * density)


class MaybeNoisy(eqx.Module):
    r"""Where the time-free objectives (implicit, sliced) evaluate the model.

    Without an SDE: on the data itself at $t = 0$ (Kasim's tutorial: a time-free network). With a
    linear SDE: at $x_t = m(t)x + s(t)z$, $t \sim U[\epsilon, T]$, weighted by $s(t)^2$ so
    every time contributes on the same scale; these objectives need only samples of
    $p_t$, which $x_t$ is.
    """

    sde: AbstractLinearSDE | None
    eps: float | None = static_number()

    def __init__(self, objective: AbstractObjective, sde: AbstractLinearSDE | None, eps):
        require_linear(objective, sde)
        if sde is None and eps is not None:
            raise ValueError("`eps` only applies with an `sde`; leave it out without one.")
        self.sde, self.eps = sde, None if sde is None else check_eps(sde, eps)

    def __call__(self, x: Data, key: PRNGKeyArray) -> tuple[Scalar, Data, Scalar]:
        """Returns `(t, input, weight)`."""
        if self.sde is None:
            return jnp.zeros((), x.dtype), x, jnp.ones((), x.dtype)
        key_t, key_z = jr.split(key)
        t = jr.uniform(key_t, (), minval=self.eps, maxval=self.sde.T)
        x_t, _, std = perturb(self.sde, t, x, key_z)
        return t, x_t, std**2
