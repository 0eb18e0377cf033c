import jax.numpy as jnp

from .._custom_types import Array, Data, Scalar, ScalarLike
from . import _beta_schedule as schedule
from ._base import _as_scalar, AbstractLinearSDE


class VPSDE(AbstractLinearSDE):
    r"""The variance-preserving SDE $\mathrm{d}x = -\tfrac12\beta(t)x\,\mathrm{d}t +
    \sqrt{\beta(t)}\,\mathrm{d}w$ with $\beta(t) = \beta_{\min} + t(\beta_{\max} -
    \beta_{\min})$: an Ornstein–Uhlenbeck process with a time change.

    With $\alpha(t) = \int_0^t \beta$, the kernel is $m(t) = e^{-\alpha(t)/2}$,
    $s(t)^2 = 1 - e^{-\alpha(t)}$; the prior is $\mathcal N(0, I)$. Seed 000's OU process
    is `VPSDE(beta_min=0.001, beta_max=3)`; Song et al. use `(0.1, 20)`.

    **Arguments:**

    - `beta_min`, `beta_max`: the schedule's ends, `0 <= beta_min <= beta_max`, `beta_max > 0`.
    - `T`: the time horizon (default 1).
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
        return jnp.sqrt(self.beta(t))

    def mean_coeff(self, t: ScalarLike) -> Scalar:
        return jnp.exp(-0.5 * self._alpha(t))

    def std(self, t: ScalarLike) -> Scalar:
        return jnp.sqrt(-jnp.expm1(-self._alpha(t)))

    def sigma(self, t: ScalarLike) -> Scalar:
        return jnp.sqrt(jnp.expm1(self._alpha(t)))

    def t_from_sigma(self, sigma: ScalarLike) -> Scalar:
        alpha = jnp.log1p(jnp.square(sigma))
        return schedule.t_from_integrated_beta(self.beta_min, self.beta_max, alpha)
