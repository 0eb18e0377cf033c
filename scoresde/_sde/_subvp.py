import jax.numpy as jnp

from .._custom_types import Scalar, ScalarLike
from ._beta_schedule import AbstractBetaScheduleSDE


class SubVPSDE(AbstractBetaScheduleSDE):
    r"""The sub-VP SDE $\mathrm{d}x = -\tfrac12\beta(t)x\,\mathrm{d}t +
    \sqrt{\beta(t)(1 - e^{-2\alpha(t)})}\,\mathrm{d}w$, $\alpha(t) = \int_0^t\beta$.

    Its marginal variance $s(t)^2 = (1 - e^{-\alpha(t)})^2$ is bounded by the VP SDE's;
    $m(t) = e^{-\alpha(t)/2}$; the prior is $\mathcal N(0, I)$. Same schedule as
    [`VPSDE`][scoresde.VPSDE].

    **Arguments:**

    - `beta_min`, `beta_max`: the schedule's ends, `0 <= beta_min <= beta_max`, `beta_max > 0`.
    - `T`: the time horizon (default 1).
    """

    def diffusion(self, t: ScalarLike) -> Scalar:
        return jnp.sqrt(self.beta(t) * -jnp.expm1(-2 * self.integrated_beta(t)))

    def std(self, t: ScalarLike) -> Scalar:
        return -jnp.expm1(-self.integrated_beta(t))

    def sigma(self, t: ScalarLike) -> Scalar:
        return 2 * jnp.sinh(0.5 * self.integrated_beta(t))

    def t_from_sigma(self, sigma: ScalarLike) -> Scalar:
        return self.t_from_integrated_beta(2 * jnp.arcsinh(0.5 * jnp.asarray(sigma)))
