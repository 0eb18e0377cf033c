import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._custom_types import (
    Array,
    Batch,
    Data,
    Float,
    FloatArrayLike,
    PRNGKeyArray,
    Scalar,
    ScalarLike,
)
from .._sde import AbstractLinearSDE, warn_prior_mismatch
from .._typecheck import typechecked
from ._base import AbstractExactScore


class EmpiricalScore(AbstractExactScore):
    r"""The exact score of the empirical measure $\hat\mu = \frac1J\sum_j \delta_{x_j}$
    pushed through a linear SDE (as in the tutorial "Score-based generative models from
    scratch in JAX").

    $\hat p_t = \frac1J \sum_j \mathcal N(m(t)x_j, s(t)^2 I)$ is a mixture with one component
    per training point, so

    $$\nabla_x \log \hat p_t(x) = \frac{m(t)\sum_j r_j(x)\,x_j - x}{s(t)^2},\qquad
    r_j(x) = \operatorname{softmax}_j\!\Big(-\frac{\|x - m(t)x_j\|^2}{2s(t)^2}\Big),$$

    computed with a log-sum-exp. The reverse SDE driven by this score reproduces the training
    points (memorisation); every evaluation reads the whole data set.

    **Arguments:**

    - `sde`: a linear SDE.
    - `data`: the training points, shape `(J, *data_shape)` (vectors or images).
    """

    sde: AbstractLinearSDE
    data: Float[Array, "J *data"]

    @typechecked
    def __init__(self, sde: AbstractLinearSDE, *, data: FloatArrayLike):
        if np.ndim(data) < 1 or np.shape(data)[0] < 1:
            raise ValueError(
                f"`data` must have shape (J, *data_shape) with J >= 1, got {np.shape(data)}."
            )
        if not isinstance(data, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(data))):
            raise ValueError("`data` contains NaN or inf.")
        self.sde = sde
        self.data = jnp.asarray(data, dtype=float)
        if not isinstance(data, jax.core.Tracer):
            warn_prior_mismatch(sde, float(jnp.mean(jnp.square(self.data))))

    def _check(self, x: Data) -> None:
        if x.shape != self.data.shape[1:]:
            raise ValueError(
                f"EmpiricalScore expects one sample of shape {self.data.shape[1:]} (no batch "
                f"axis), got {x.shape}."
            )

    def _logits(self, t: ScalarLike, x: Data):
        m, s = self.sde.mean_coeff(t), self.sde.std(t)
        sq = jnp.sum((x - m * self.data) ** 2, axis=tuple(range(1, self.data.ndim)))
        return -0.5 * sq / s**2, m, s

    def log_prob(self, t: ScalarLike, x: Data) -> Scalar:
        self._check(x)
        logits, _, s = self._logits(t, x)
        n = self.data.shape[0]
        return jax.nn.logsumexp(logits) - jnp.log(n) - 0.5 * x.size * jnp.log(2 * jnp.pi * s**2)

    def __call__(self, t: ScalarLike, x: Data) -> Data:
        self._check(x)
        logits, m, s = self._logits(t, x)
        resp = jax.nn.softmax(logits)
        mean = jnp.tensordot(resp, self.data, axes=1)
        return (m * mean - x) / s**2

    def sample(self, key: PRNGKeyArray, num: int, t: ScalarLike = 0.0) -> Batch:
        key_j, key_z = jr.split(key)
        j = jr.randint(key_j, (num,), 0, self.data.shape[0])
        z = jr.normal(key_z, (num,) + self.data.shape[1:])
        return self.sde.mean_coeff(t) * self.data[j] + self.sde.std(t) * z
