"""The linear noise schedule and everything the VP and sub-VP SDEs share."""

from typing import ClassVar

import jax.numpy as jnp

from .._custom_types import Array, Data, Scalar, ScalarLike
from ._base import _as_scalar, _concrete, _require, AbstractLinearSDE


def t_from_integrated_beta(beta_min: Array, beta_max: Array, alpha: ScalarLike) -> Scalar:
    """Inverts $\\alpha(t)$; the rationalised root stays exact when beta_max == beta_min."""
    root = jnp.sqrt(beta_min**2 + 2 * (beta_max - beta_min) * alpha)
    return 2 * alpha / (beta_min + root)


class AbstractBetaScheduleSDE(AbstractLinearSDE):
    r"""An SDE with drift $-\tfrac12\beta(t)x$, $\beta(t) = \beta_{\min} + t(\beta_{\max} -
    \beta_{\min})$, mean coefficient $m(t) = e^{-\alpha(t)/2}$ with $\alpha(t) = \int_0^t\beta
    = t\beta_{\min} + \tfrac12 t^2(\beta_{\max} - \beta_{\min})$, and prior
    $\mathcal N(0, I)$. Subclasses give the diffusion and the std."""

    beta_min: Array
    beta_max: Array
    T: Array

    prior_fix: ClassVar[str] = "rescale the data to unit scale, or take a larger beta_max (or T)"

    def __init__(
        self, beta_min: ScalarLike = 0.1, beta_max: ScalarLike = 20.0, T: ScalarLike = 1.0
    ):
        self.beta_min = _as_scalar("beta_min", beta_min)
        self.beta_max = _as_scalar("beta_max", beta_max)
        self.T = _as_scalar("T", T)

    def __check_init__(self):
        if not _concrete(self.beta_min, self.beta_max, self.T):
            return
        lo, hi = float(self.beta_min), float(self.beta_max)
        _require(lo >= 0, f"`beta_min` must be >= 0, got {lo}.")
        _require(
            hi > 0 and hi >= lo,
            f"`beta_max` must be > 0 and >= `beta_min`, got beta_min={lo}, beta_max={hi}; "
            "swap them if they are the wrong way round.",
        )
        _require(float(self.T) > 0, f"`T` must be > 0, got {float(self.T)}.")

    @property
    def default_eps(self) -> float:
        return 1e-3

    @property
    def prior_std(self) -> Scalar:
        return jnp.ones_like(self._const("T"))

    def beta(self, t: ScalarLike) -> Scalar:
        r"""$\beta(t)$."""
        lo, hi = self._const("beta_min"), self._const("beta_max")
        return lo + t * (hi - lo)

    def integrated_beta(self, t: ScalarLike) -> Scalar:
        r"""$\alpha(t) = \int_0^t \beta(s)\,\mathrm{d}s$."""
        lo, hi = self._const("beta_min"), self._const("beta_max")
        return t * lo + 0.5 * t**2 * (hi - lo)

    def t_from_integrated_beta(self, alpha: ScalarLike) -> Scalar:
        return t_from_integrated_beta(self._const("beta_min"), self._const("beta_max"), alpha)

    def drift(self, t: ScalarLike, x: Data) -> Data:
        return (-0.5 * self.beta(t)).astype(x.dtype) * x

    def mean_coeff(self, t: ScalarLike) -> Scalar:
        return jnp.exp(-0.5 * self.integrated_beta(t))
