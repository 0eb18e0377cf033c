import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy as jsp
import numpy as np

from .._checks import as_python_scalar, check_key, check_num, check_weights
from .._custom_types import (
    Array,
    Batch,
    Float,
    FloatArrayLike,
    Int,
    PRNGKeyArray,
    Scalar,
    ScalarLike,
)
from .._sde import AbstractLinearSDE, warn_prior_mismatch
from .._typecheck import typechecked
from ._base import AbstractExactScore


def _validate(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, allow_singular: bool
) -> None:
    if weights.ndim != 1:
        raise ValueError(f"`weights` must have shape (k,), got {weights.shape}.")
    k = weights.shape[0]
    if means.ndim != 2 or means.shape[0] != k:
        raise ValueError(
            f"`means` must have shape (k, d) = ({k}, d) to match `weights`, got {means.shape}."
        )
    d = means.shape[1]
    if covariances.shape != (k, d, d):
        raise ValueError(
            f"`covariances` must have shape (k, d, d) = ({k}, {d}, {d}) to match `means`, "
            f"got {covariances.shape}."
        )
    for name, value in (("means", means), ("covariances", covariances)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"`{name}` contains NaN or inf.")
    check_weights(weights)
    if not np.allclose(covariances, np.swapaxes(covariances, -1, -2), rtol=1e-5, atol=1e-8):
        raise ValueError("`covariances` must be symmetric matrices.")
    eigenvalues = np.linalg.eigvalsh(covariances)
    smallest = eigenvalues.min(axis=-1)
    floor = -1e-5 * np.abs(eigenvalues).max(axis=-1) if allow_singular else 0.0
    if allow_singular and np.any(smallest < floor):
        bad = int(np.argmin(smallest - floor))
        raise ValueError(
            f"`covariances[{bad}]` is not positive semi-definite (smallest eigenvalue "
            f"{smallest[bad]:.3g})."
        )
    if not allow_singular and np.any(smallest <= 0):
        bad = int(np.argmin(smallest))
        raise ValueError(
            f"`covariances[{bad}]` is not positive definite (smallest eigenvalue "
            f"{smallest[bad]:.3g}); every covariance must be symmetric positive definite."
        )


def _posterior_components(prior: "GaussianMixtureScore", obs, y: Array):
    """Bayes per component (see `GaussianMixtureScore.posterior`)."""
    A = obs.matrix().astype(prior.means.dtype)
    y = y.reshape(-1)
    m = A.shape[0]
    var = obs.noise_std.astype(A.dtype) ** 2
    S = jnp.einsum("ij,kjl,ml->kim", A, prior.covariances, A) + var * jnp.eye(m)
    S = 0.5 * (S + jnp.swapaxes(S, -1, -2))
    r = y - prior.means @ A.T
    lam, vec = jnp.linalg.eigh(S)
    # On the range of S only: for sigma_y > 0 that is everything; for a noiseless
    # observation the unobserved directions are exactly zero and drop out.
    keep = lam > 1e3 * jnp.finfo(A.dtype).eps * m * lam.max(axis=-1, keepdims=True)
    inv = jnp.where(keep, 1 / jnp.where(keep, lam, 1.0), 0.0)
    S_pinv = jnp.einsum("kij,kj,klj->kil", vec, inv, vec)
    quad = jnp.einsum("ki,kij,kj->k", r, S_pinv, r)
    logdet = jnp.sum(jnp.where(keep, jnp.log(jnp.where(keep, lam, 1.0)), 0.0), axis=-1)
    rank = keep.sum(axis=-1)
    log_evidence = -0.5 * (quad + logdet + rank * jnp.log(2 * jnp.pi))
    weights = jax.nn.softmax(jnp.log(prior.weights) + log_evidence)
    gain = jnp.einsum("kij,lj,klm->kim", prior.covariances, A, S_pinv)
    means = prior.means + jnp.einsum("kim,km->ki", gain, r)
    covs = prior.covariances - jnp.einsum("kim,mj,kjl->kil", gain, A, prior.covariances)
    return weights, means, 0.5 * (covs + jnp.swapaxes(covs, -1, -2))


def _is_key(x) -> bool:
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return True
    return isinstance(x, (jax.Array, np.ndarray)) and x.dtype == jnp.uint32 and x.shape == (2,)


def _key_num_t(name: str, args: tuple, key, t):
    """`(key, num, t)` from `f(num, t, *, key)` or the older `f(key, num, t)`."""
    if args and _is_key(args[0]):
        if key is not None:
            raise TypeError(f"`{name}`: pass the key once, as `key=`.")
        key, args = args[0], args[1:]
    if not 1 <= len(args) <= 2:
        raise TypeError(f"`{name}` is called as {name}(num, t=0.0, *, key=key).")
    if key is None:
        raise TypeError(f"`{name}` needs `key=`, a jax.random key: {name}(num, t, key=key).")
    check_key(key)
    return key, args[0], (args[1] if len(args) == 2 else t)


class GaussianMixtureScore(AbstractExactScore):
    r"""The exact score of a Gaussian mixture pushed through a linear SDE.

    If $p_0 = \sum_k w_k \mathcal N(\mu_k, \Sigma_k)$ and $x_t = m(t)x_0 + s(t)z$, then
    $p_t = \sum_k w_k \mathcal N(m(t)\mu_k,\; C_k(t))$ with $C_k(t) = m(t)^2\Sigma_k + s(t)^2 I$,
    and

    $$\nabla_x \log p_t(x) = -\sum_k r_k(x)\, C_k(t)^{-1}(x - m(t)\mu_k),$$

    where $r_k(x) \propto w_k \mathcal N(x; m(t)\mu_k, C_k(t))$ are the posterior component
    probabilities. Works in any dimension $d$, with full covariances.

    **Arguments:**

    - `sde`: a linear SDE ([`VPSDE`][scoresde.VPSDE], [`SubVPSDE`][scoresde.SubVPSDE],
      [`VESDE`][scoresde.VESDE]).
    - `weights`: shape `(k,)`, non-negative, summing to 1.
    - `means`: shape `(k, d)`.
    - `covariances`: shape `(k, d, d)`, symmetric positive definite.
    - `allow_singular`: accept positive semi-definite covariances (a noiseless
      observation's posterior is one). For $t > 0$ everything is as usual, since
      $C_k(t) = m(t)^2\Sigma_k + s(t)^2 I$ is positive definite; at $t = 0$ the density is
      degenerate and `log_prob` is not defined (exact samples are).
    """

    sde: AbstractLinearSDE
    weights: Float[Array, " k"]
    means: Float[Array, "k d"]
    covariances: Float[Array, "k d d"]

    @typechecked
    def __init__(
        self,
        sde: AbstractLinearSDE,
        *,
        weights: FloatArrayLike,
        means: FloatArrayLike,
        covariances: FloatArrayLike,
        allow_singular: bool = False,
    ):
        concrete = not any(isinstance(a, jax.core.Tracer) for a in (weights, means, covariances))
        if concrete:
            _validate(
                np.asarray(weights), np.asarray(means), np.asarray(covariances), allow_singular
            )
        self.sde = sde
        self.weights = jnp.asarray(weights, dtype=float)
        self.means = jnp.asarray(means, dtype=float)
        self.covariances = jnp.asarray(covariances, dtype=float)
        if concrete:
            warn_prior_mismatch(sde, self.mean_square())

    def mean_square(self) -> float:
        r"""$\mathbb E[x_d^2]$ of the mixture, averaged over dimensions:
        $\frac1d\sum_k w_k(\|\mu_k\|^2 + \operatorname{tr}\Sigma_k)$ (checked against the
        SDE's prior by `warn_prior_mismatch`)."""
        per = jnp.sum(self.means**2, axis=1) + jnp.trace(self.covariances, axis1=1, axis2=2)
        return float(jnp.sum(self.weights * per) / self.means.shape[1])

    def _components(self, t: ScalarLike):
        m, s = self.sde.mean_coeff(t), self.sde.std(t)
        d = self.means.shape[1]
        cov = m**2 * self.covariances + s**2 * jnp.eye(d)
        return m * self.means, jnp.linalg.cholesky(cov)

    def _log_joint_and_whitened(
        self, t: ScalarLike, x: Float[Array, " d"], log_weights: Float[Array, " k"] | None = None
    ):
        centres, chol = self._components(t)
        diff = x - centres
        white = jax.vmap(lambda c, r: jsp.linalg.solve_triangular(c, r, lower=True))(chol, diff)
        logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        d = x.shape[0]
        log_normal = -0.5 * (jnp.sum(white**2, axis=-1) + logdet + d * jnp.log(2 * jnp.pi))
        log_weights = jnp.log(self.weights) if log_weights is None else log_weights
        return log_weights + log_normal, white, chol

    def log_prob(self, t: ScalarLike, x: Float[Array, " d"]) -> Scalar:
        return self.log_prob_weighted(t, x, None)

    def __call__(self, t: ScalarLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return self.score_weighted(t, x, None)

    def log_prob_weighted(
        self, t: ScalarLike, x: Float[Array, " d"], log_weights: Float[Array, " k"] | None
    ) -> Scalar:
        r"""$\log p_t(x)$ of the mixture with its weights replaced by `exp(log_weights)`
        (normalised; `-inf` drops a component), or its own weights for `None`."""
        log_joint, _, _ = self._log_joint_and_whitened(t, x, log_weights)
        return jax.nn.logsumexp(log_joint)

    def score_weighted(
        self, t: ScalarLike, x: Float[Array, " d"], log_weights: Float[Array, " k"] | None
    ) -> Float[Array, " d"]:
        """The score of the mixture with weights `exp(log_weights)`, as `log_prob_weighted`."""
        log_joint, white, chol = self._log_joint_and_whitened(t, x, log_weights)
        resp = jax.nn.softmax(log_joint)
        # C^{-1}(x - c) = L^{-T} L^{-1}(x - c)
        precision_diff = jax.vmap(
            lambda c, w: jsp.linalg.solve_triangular(c, w, lower=True, trans="T")
        )(chol, white)
        return -jnp.sum(resp[:, None] * precision_diff, axis=0)

    def responsibilities(self, t: ScalarLike, x: Float[Array, " d"]) -> Float[Array, " k"]:
        """Posterior probabilities $r_k(x)$ of each component at time `t`."""
        log_joint, _, _ = self._log_joint_and_whitened(t, x)
        return jax.nn.softmax(log_joint)

    def sample(self, *args, key: PRNGKeyArray | None = None, t: ScalarLike = 0.0) -> Batch:
        """`num` exact draws of $p_t$: `sample(num, t=0.0, *, key)`, keyed like the rest of
        the library (the older positional form `sample(key, num, t)` still works)."""
        key, num, t = _key_num_t("sample", args, key, t)
        num = as_python_scalar(num)
        check_num("num", num)
        key_c, key_z = jr.split(key)
        component = jr.choice(key_c, self.weights.shape[0], (num,), p=self.weights)
        return self.sample_components(key_z, component, t)

    def sample_components(
        self, key: PRNGKeyArray, components: Int[Array, " n"], t: ScalarLike = 0.0
    ) -> Batch:
        """One exact draw of $p_t$ restricted to component `components[i]` per row."""
        centres, chol = self._components(t)
        # A singular covariance (a noiseless posterior at t = 0) has no Cholesky factor;
        # its symmetric square root serves the same purpose.
        chol = jnp.where(jnp.isfinite(chol).all(), chol, self._symmetric_sqrt(t))
        z = jr.normal(key, (components.shape[0], self.means.shape[1]))
        return centres[components] + jnp.einsum("nij,nj->ni", chol[components], z)

    def _symmetric_sqrt(self, t: ScalarLike) -> Float[Array, "k d d"]:
        m, s = self.sde.mean_coeff(t), self.sde.std(t)
        cov = m**2 * self.covariances + s**2 * jnp.eye(self.means.shape[1])
        lam, vec = jnp.linalg.eigh(cov)
        return vec * jnp.sqrt(jnp.maximum(lam, 0.0))[..., None, :]

    def posterior(self, obs, y: FloatArrayLike) -> "GaussianMixtureScore":
        r"""The exact posterior $p(x \mid y)$ of this mixture prior under the linear
        observation `obs`, $y = A x + \sigma_y\varepsilon$, as a `GaussianMixtureScore`
        (so its score at every $t$, `log_prob` and exact samples come for free).

        Bayes per component: with $S_k = A\Sigma_k A^\top + \sigma_y^2 I$ and
        $K_k = \Sigma_k A^\top S_k^{-1}$,

        $$w_k' \propto w_k\,\mathcal N(y;\, A\mu_k,\, S_k),\qquad
        \mu_k' = \mu_k + K_k (y - A\mu_k),\qquad \Sigma_k' = \Sigma_k - K_k A \Sigma_k.$$

        Noiseless observations ($\sigma_y = 0$, e.g. a mask) use the pseudo-inverse and
        pseudo-determinant of $S_k$ on its range (the observed coordinates); the posterior
        covariances are then singular (`allow_singular=True`).

        **Arguments:**

        - `obs`: a [`LinearObservation`][scoresde.LinearObservation] whose operator acts on
          vectors of this mixture's dimension.
        - `y`: one observation, of the operator's output shape.

        **Returns:** a `GaussianMixtureScore` on the same SDE.
        """
        from .._guidance import LinearObservation

        if not isinstance(obs, LinearObservation):
            raise TypeError(f"`obs` must be a LinearObservation, got {type(obs).__name__}.")
        d = self.means.shape[1]
        obs.check((d,), np.shape(y))
        weights, means, covs = _posterior_components(self, obs, jnp.asarray(y, dtype=float))
        return GaussianMixtureScore(
            self.sde,
            weights=weights,
            means=means,
            covariances=covs,
            allow_singular=obs.noiseless,
        )

    def class_conditional(self) -> "ClassConditionalMixture":
        """The mixture's components as classes: a conditional score `cond(t, x, c)` whose
        label `c` in `[0, k)` selects component `c` and whose null label `k` gives the
        whole mixture. See [`ClassConditionalMixture`][scoresde.ClassConditionalMixture]."""
        from ._class_conditional import ClassConditionalMixture

        return ClassConditionalMixture(self)
