import jax.numpy as jnp
import jax.random as jr

from .._condition import AbstractClassConditional, check_labels
from .._custom_types import Array, Batch, Float, Int, PRNGKeyArray, Scalar, ScalarLike
from ._gaussian_mixture import _key_num_t, GaussianMixtureScore


class ClassConditionalMixture(AbstractClassConditional):
    r"""The exact class-conditional scores of a Gaussian mixture whose components are its
    classes: label $c \in \{0, \dots, k-1\}$ is component $c$, and the null label $k$ is
    the whole mixture.

    Pushed through the linear SDE, class $c$ is $p_t(x \mid c) = \mathcal N(m(t)\mu_c,\;
    m(t)^2\Sigma_c + s(t)^2 I)$ and the null label gives $p_t(x) = \sum_c w_c\,
    p_t(x \mid c)$, so

    $$\text{cond}(t, x, c) = \nabla_x \log p_t(x \mid c),\qquad
    \text{cond}(t, x, k) = \nabla_x \log p_t(x).$$

    Both are the mixture's own formula with the weights replaced by a one-hot vector (or
    kept). It is the ground truth for class-conditional sampling and for
    [`ClassifierFreeGuidance`][scoresde.ClassifierFreeGuidance], whose guided score of the
    exact conditionals is $\nabla\log p_t(x \mid c) + w\,\nabla\log p_t(c \mid x)$.

    Build it with
    [`GaussianMixtureScore.class_conditional`][scoresde.GaussianMixtureScore.class_conditional].

    **Arguments:**

    - `mixture`: a [`GaussianMixtureScore`][scoresde.GaussianMixtureScore] with $k$
      components.

    Called as `cond(t, x, c)` with ONE sample `x` of shape `(d,)` and an integer label `c`.
    """

    mixture: GaussianMixtureScore

    def __init__(self, mixture: GaussianMixtureScore):
        if not isinstance(mixture, GaussianMixtureScore):
            raise TypeError(
                f"`mixture` must be a GaussianMixtureScore, got {type(mixture).__name__}."
            )
        self.mixture = mixture

    @property
    def num_classes(self) -> int:
        """$k$, the number of components (the null label is $k$)."""
        return int(self.mixture.weights.shape[0])

    @property
    def sde(self):
        return self.mixture.sde

    @property
    def null_condition(self) -> int:
        """The null label $k$: the whole mixture."""
        return self.num_classes

    def _log_weights(self, c: Int[Array, ""]) -> Float[Array, " k"]:
        c = jnp.asarray(c)
        if c.shape != () or not jnp.issubdtype(c.dtype, jnp.integer):
            raise ValueError(
                f"ClassConditionalMixture takes ONE integer label `c` per sample, got shape "
                f"{c.shape} and dtype {c.dtype}."
            )
        k = self.num_classes
        one_hot = jnp.where(jnp.arange(k) == c, 0.0, -jnp.inf)
        return jnp.where(c == k, jnp.log(self.mixture.weights), one_hot)

    def __call__(
        self, t: ScalarLike, x: Float[Array, " d"], c: Int[Array, ""]
    ) -> Float[Array, " d"]:
        r"""$\nabla_x \log p_t(x \mid c)$ (the mixture's score for the null label)."""
        return self.mixture.score_weighted(t, x, self._log_weights(c))

    def log_prob(self, t: ScalarLike, x: Float[Array, " d"], c: Int[Array, ""]) -> Scalar:
        r"""$\log p_t(x \mid c)$ (the mixture's log-density for the null label)."""
        return self.mixture.log_prob_weighted(t, x, self._log_weights(c))

    def sample(self, *args, key: PRNGKeyArray | None = None, t: ScalarLike = 0.0) -> Batch:
        """One exact draw of $p_t(x \\mid c_i)$ for each label `condition[i]` (a draw of the
        whole mixture for the null label): as many draws as labels. Called
        `sample(condition, t=0.0, *, key)` (the older `sample(key, condition, t)` still
        works)."""
        key, condition, t = _key_num_t("sample", args, key, t)
        check_labels(self, condition)
        condition = jnp.asarray(condition)
        key_c, key_x = jr.split(key)
        k = self.num_classes
        drawn = jr.choice(key_c, k, condition.shape, p=self.mixture.weights)
        return self.mixture.sample_components(key_x, jnp.where(condition == k, drawn, condition), t)
