import jax.numpy as jnp

from .._custom_types import Array, Data, Scalar, ScalarLike
from . import _beta_schedule as schedule
from ._base import _as_scalar, AbstractLinearSDE


class SubVPSDE(AbstractLinearSDE):
    r"""The sub-VP SDE $\mathrm{d}x = -\tfrac12\beta(t)x\,\mathrm{d}t +
    \sqrt{\beta(t)(1 - e^{-2\alpha(t)})}\,\mathrm{d}w$, $\alpha(t) = \int_0^t\beta$.

    Its marginal variance $s(t)^2 = (1 - e^{-\alpha(t)})^2$ is bounded by the VP SDE's;
    $m(t) = e^{-\alpha(t)/2}$; the prior is $\mathcal N(0, I)$. Same schedule and
    arguments as [`VPSDE`][scoresde.VPSDE].
    """

    beta_min: Array
    beta_max: Array
    T: Array

    def __init__(
        self, beta_min: ScalarLike = 0.1, beta_max: ScalarLike = 20.0, T: ScalarLike = 1.0
    ):
        self.beta_min = _as_scalar("beta_min", beta_min)
        self.beta_max = _as_scalar("beta_max", beta_max)
        self.T = _as_scalar("T", T)

    def __check_init__(self):
        schedule.check_betas(self.beta_min, self.beta_max, self.T)

    @property
    def default_eps(self) -> float:
        return 1e-3

    @property
    def prior_std(self) -> Scalar:
        return jnp.ones_like(self.T)

    def beta(self, t: ScalarLike) -> Scalar:
        return schedule.beta(self.beta_min, self.beta_max, t)

    def _alpha(self, t: ScalarLike) -> Scalar:
        return schedule.integrated_beta(self.beta_min, self.beta_max, t)

    def drift(self, t: ScalarLike, x: Data) -> Data:
        return (-0.5 * self.beta(t)).astype(x.dtype) * x

    def diffusion(self, t: ScalarLike) -> Scalar:
        return jnp.sqrt(self.beta(t) * -jnp.expm1(-2 * self._alpha(t)))

    def mean_coeff(self, t: ScalarLike) -> Scalar:
        return jnp.exp(-0.5 * self._alpha(t))

    def std(self, t: ScalarLike) -> Scalar:
        return -jnp.expm1(-self._alpha(t))

    def sigma(self, t: ScalarLike) -> Scalar:
        return 2 * jnp.sinh(0.5 * self._alpha(t))

    def t_from_sigma(self, sigma: ScalarLike) -> Scalar:
        alpha = 2 * jnp.arcsinh(0.5 * jnp.asarray(sigma))
        return schedule.t_from_integrated_beta(self.beta_min, self.beta_max, alpha)
