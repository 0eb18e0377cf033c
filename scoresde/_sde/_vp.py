import jax.numpy as jnp

from .._custom_types import Scalar, ScalarLike
from ._beta_schedule import AbstractBetaScheduleSDE


class VPSDE(AbstractBetaScheduleSDE):
    r"""The variance-preserving SDE $\mathrm{d}x = -\tfrac12\beta(t)x\,\mathrm{d}t +
    \sqrt{\beta(t)}\,\mathrm{d}w$ with $\beta(t) = \beta_{\min} + t(\beta_{\max} -
    \beta_{\min})$: an Ornstein–Uhlenbeck process with a time change.

    With $\alpha(t) = \int_0^t \beta$, the kernel is $m(t) = e^{-\alpha(t)/2}$,
    $s(t)^2 = 1 - e^{-\alpha(t)}$; the prior is $\mathcal N(0, I)$. The Ornstein–Uhlenbeck
    process of the tutorial "Score-based generative models from scratch in JAX" is
    `VPSDE(beta_min=0.001, beta_max=3)`; Song et al. (2021) use `(0.1, 20)`.

    **Arguments:**

    - `beta_min`, `beta_max`: the schedule's ends, `0 <= beta_min <= beta_max`, `beta_max > 0`.
    - `T`: the time horizon (default 1).
    """

    def diffusion(self, t: ScalarLike) -> Scalar:
        return jnp.sqrt(self.beta(t))

    def std(self, t: ScalarLike) -> Scalar:
        return jnp.sqrt(-jnp.expm1(-self.integrated_beta(t)))

    def sigma(self, t: ScalarLike) -> Scalar:
        return jnp.sqrt(jnp.expm1(self.integrated_beta(t)))

    def t_from_sigma(self, sigma: ScalarLike) -> Scalar:
        return self.t_from_integrated_beta(jnp.log1p(jnp.square(sigma)))
