from typing import ClassVar

import jax.numpy as jnp

from .._custom_types import Array, Data, Scalar, ScalarLike
from ._base import _as_scalar, _concrete, _require, AbstractLinearSDE


class VESDE(AbstractLinearSDE):
    r"""The variance-exploding SDE $\mathrm{d}x = \sqrt{\mathrm{d}[\sigma(t)^2]/\mathrm{d}t}
    \,\mathrm{d}w$ with $\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^{t/T}$
    (NCSN / SMLD in continuous time).

    The kernel is exact: $m(t) = 1$, $s(t)^2 = \sigma(t)^2 - \sigma_{\min}^2$, so $s(0) = 0$
    (Song et al.'s code uses $s(t) = \sigma(t)$, which is off by $\sigma_{\min}$ at small
    $t$). The prior is $\mathcal N(0, \sigma_{\max}^2 I)$.

    **Arguments:**

    - `sigma_min`, `sigma_max`: `0 < sigma_min < sigma_max`.
    - `T`: the time horizon (default 1).
    """

    sigma_min: Array
    sigma_max: Array
    T: Array

    prior_fix: ClassVar[str] = (
        "rescale the data, or take sigma_max at least the data's largest pairwise distance"
    )

    def __init__(
        self, sigma_min: ScalarLike = 0.01, sigma_max: ScalarLike = 50.0, T: ScalarLike = 1.0
    ):
        self.sigma_min = _as_scalar("sigma_min", sigma_min)
        self.sigma_max = _as_scalar("sigma_max", sigma_max)
        self.T = _as_scalar("T", T)

    def __check_init__(self):
        if not _concrete(self.sigma_min, self.sigma_max, self.T):
            return
        lo, hi = float(self.sigma_min), float(self.sigma_max)
        _require(lo > 0, f"`sigma_min` must be > 0, got {lo}.")
        _require(hi > lo, f"`sigma_max` must be > `sigma_min`, got sigma_min={lo}, sigma_max={hi}.")
        _require(float(self.T) > 0, f"`T` must be > 0, got {float(self.T)}.")

    @property
    def default_eps(self) -> float:
        return 1e-5

    @property
    def level_eps(self) -> float | Scalar:
        r"""The time at which the marginal std is $\sigma_{\min}$,
        $t = T\ln 2 / (2\ln(\sigma_{\max}/\sigma_{\min}))$: a ladder of noise levels
        ([`AnnealedLangevin`][scoresde.AnnealedLangevin],
        [`MultiNoiseDSM`][scoresde.MultiNoiseDSM]) then ends at the `sigma_min` the user
        wrote, as NCSN's $\sigma_L$, not at the exact std at `default_eps` (for
        `VESDE(0.1, 20)`, 0.001: a step size $\epsilon\sigma_i^2/\sigma_L^2$ chosen for
        $\sigma_L = 0.1$ would be $10^4$ times too large). A Python float when the constants
        are concrete."""
        t = self.t_from_sigma(self._const("sigma_min"))
        return float(t) if _concrete(t) else t

    @property
    def prior_std(self) -> Scalar:
        return self._const("sigma_max")

    @property
    def _log_ratio(self) -> Scalar:
        return jnp.log(self._const("sigma_max") / self._const("sigma_min"))

    def noise_level(self, t: ScalarLike) -> Scalar:
        r"""$\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^{t/T}$."""
        return self._const("sigma_min") * jnp.exp(self._log_ratio * t / self._const("T"))

    def drift(self, t: ScalarLike, x: Data) -> Data:
        return jnp.zeros_like(x)

    def diffusion(self, t: ScalarLike) -> Scalar:
        return self.noise_level(t) * jnp.sqrt(2 * self._log_ratio / self._const("T"))

    def mean_coeff(self, t: ScalarLike) -> Scalar:
        return jnp.ones_like(jnp.asarray(t, dtype=self._const("T").dtype))

    def std(self, t: ScalarLike) -> Scalar:
        lo, T = self._const("sigma_min"), self._const("T")
        return lo * jnp.sqrt(jnp.expm1(2 * self._log_ratio * t / T))

    def sigma(self, t: ScalarLike) -> Scalar:
        return self.std(t)

    def t_from_sigma(self, sigma: ScalarLike) -> Scalar:
        lo, T = self._const("sigma_min"), self._const("T")
        return T * jnp.log1p(jnp.square(sigma) / lo**2) / (2 * self._log_ratio)
