"""Learned embeddings of a network's condition: an integer class label or a float vector.

Every conditional network of `scoresde.nn` holds one of these (or `None` when it is
unconditional), built by `condition_embedding`, and embeds one sample's condition with
`embed_condition`, which also checks the call against how the network was built. The
checks look only at shapes and dtypes (and at the value of a concrete label), so they run
once at trace time and cost nothing inside `jit`.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import static_number
from .._condition import AbstractClassConditional, AbstractConditional
from .._custom_types import Array, ArrayLike, Float, PRNGKeyArray
from ._misc import check_int


# The embedding's key is `jr.fold_in(key, _CONDITION_KEY_DATA)` of the network's key, which
# leaves the network's own `jr.split(key, n)` as it was: an unconditional network has the
# same parameters as before conditioning existed, and a conditional one the same backbone
# initialisation apart from the layers whose input grows. The constant is large on purpose:
# with JAX's (default) partitionable Threefry, `jr.fold_in(key, i) == jr.split(key, n)[i]`
# for i < n, so `fold_in(key, 1)` would reuse the key of a network's second sub-module.
_CONDITION_KEY_DATA = 0x636F6E64  # "cond"


def condition_key(key: PRNGKeyArray) -> PRNGKeyArray:
    """The key of a network's condition embedding, derived from the network's `key`."""
    return jr.fold_in(key, _CONDITION_KEY_DATA)


class AbstractConditionEmbedding(AbstractConditional):
    """A learned map from ONE sample's condition to a vector of `size` features."""

    size: eqx.AbstractVar[int]

    @abc.abstractmethod
    def usage(self, name: str) -> str:
        """How the network `name` that holds this embedding must be called."""

    @abc.abstractmethod
    def __call__(self, condition, *, name: str) -> Float[Array, " size"]:
        """The embedding of ONE sample's `condition` (checked; `name` is the network's)."""


class LabelEmbedding(AbstractConditionEmbedding, AbstractClassConditional):
    r"""A learned vector per class label: `eqx.nn.Embedding(num_classes + 1, size)`.

    Labels `0 .. num_classes - 1` are the classes; the extra row, label `num_classes`, is
    the null label ("no class"), which classifier-free guidance trains by dropping labels
    and uses as the unconditional score. Rows are initialised $\mathcal N(0, 1)$ (Equinox's
    default, as PyTorch's `nn.Embedding` in Dhariwal & Nichol's ADM), so distinct labels
    already give distinct embeddings at initialisation.

    **Arguments:**

    - `num_classes`: the number of classes (>= 1), not counting the null label.
    - `size`: the size of the embedding.
    - `key`: a `jax.random` key for the initialisation.

    Called as `embedding(c)` with ONE 0-d integer label `c` in `[0, num_classes]`; a
    traced label outside that range gives a NaN embedding (a concrete one raises).
    """

    embedding: eqx.nn.Embedding
    num_classes: int = static_number()
    size: int = static_number()

    def __init__(self, num_classes: int, size: int, *, key: PRNGKeyArray):
        self.num_classes = check_int("num_classes", num_classes)
        self.size = check_int("size", size)
        self.embedding = eqx.nn.Embedding(num_classes + 1, size, key=key)

    def usage(self, name: str) -> str:
        n = self.num_classes
        return (
            f"{name} was built with num_classes={n}: call it as net(t, x, c) with an integer "
            f"label c in [0, {n}] ({n} is the null label)"
        )

    def __call__(self, condition, *, name: str = "LabelEmbedding") -> Float[Array, " size"]:
        n = self.num_classes
        if isinstance(condition, bool):
            raise TypeError(f"{self.usage(name)}; `condition` is a bool, not a label.")
        try:
            c = jnp.asarray(condition)
        except TypeError as e:
            raise TypeError(
                f"{self.usage(name)}; `condition` of type {type(condition).__name__} is not one."
            ) from e
        if not jnp.issubdtype(c.dtype, jnp.integer):
            raise TypeError(
                f"{self.usage(name)}; `condition` has dtype {c.dtype}. Pass integer labels, "
                "e.g. jnp.asarray(c, dtype=int)."
            )
        if c.ndim != 0:
            raise ValueError(
                f"{self.usage(name)}; `condition` has shape {c.shape}, but networks take ONE "
                "sample's label (a 0-d integer): use `jax.vmap` over a batch of (x, labels)."
            )
        # The value of `condition` itself, not of `c`: inside a trace `jnp.asarray` makes a
        # tracer even of a Python int, whose value is known here.
        if not isinstance(condition, jax.core.Tracer):
            label = int(np.asarray(condition))
            if not 0 <= label <= n:
                raise ValueError(
                    f"{self.usage(name)}; `condition` is {label}, outside [0, {n}]: classes are "
                    f"0..{n - 1} and {n} is the null label."
                )
        # A traced label out of range would otherwise be clamped by the lookup, silently
        # becoming another class: make it NaN, which `sample` and `fit` report.
        valid = (c >= 0) & (c <= n)
        return jnp.where(valid, self.embedding(jnp.clip(c, 0, n)), jnp.nan)


class VectorEmbedding(AbstractConditionEmbedding):
    """A learned affine map of a float condition vector:
    `eqx.nn.Linear(condition_size, size)`.

    **Arguments:**

    - `condition_size`: the length of one sample's condition vector.
    - `size`: the size of the embedding.
    - `key`: a `jax.random` key for the initialisation.

    Called as `embedding(c)` with ONE float vector `c` of shape `(condition_size,)`.

    There is no learned "no condition" here: for classifier-free guidance pick a null
    vector that real conditions never take (for example a vector of zeros when every
    real condition is non-zero, or append an indicator coordinate).
    """

    linear: eqx.nn.Linear
    condition_size: int = static_number()
    size: int = static_number()

    def __init__(self, condition_size: int, size: int, *, key: PRNGKeyArray):
        self.condition_size = check_int("condition_size", condition_size)
        self.size = check_int("size", size)
        self.linear = eqx.nn.Linear(condition_size, size, key=key)

    def usage(self, name: str) -> str:
        return (
            f"{name} was built with condition_size={self.condition_size}: call it as "
            f"net(t, x, c) with a float vector c of shape ({self.condition_size},)"
        )

    def __call__(self, condition, *, name: str = "VectorEmbedding") -> Float[Array, " size"]:
        try:
            c = jnp.asarray(condition)
        except TypeError as e:
            raise TypeError(
                f"{self.usage(name)}; `condition` of type {type(condition).__name__} is not one."
            ) from e
        if not jnp.issubdtype(c.dtype, jnp.floating):
            raise TypeError(
                f"{self.usage(name)}; `condition` has dtype {c.dtype}. Pass a float vector, "
                "e.g. c.astype(float)."
            )
        if c.shape != (self.condition_size,):
            raise ValueError(
                f"{self.usage(name)}; `condition` has shape {c.shape}. Networks take ONE "
                "sample's condition: use `jax.vmap` over a batch of (x, conditions)."
            )
        return self.linear(c.astype(self.linear.weight.dtype))


def condition_embedding(
    num_classes: int | None,
    condition_size: int | None,
    size: int,
    *,
    key: PRNGKeyArray,
) -> LabelEmbedding | VectorEmbedding | None:
    """The embedding a network's `num_classes=` / `condition_size=` ask for.

    **Arguments:**

    - `num_classes`: `None`, or the number of classes (>= 1) for integer labels.
    - `condition_size`: `None`, or the length (>= 1) of a float condition vector.
    - `size`: the size of the embedding.
    - `key`: the key of the embedding (a network passes
      `condition_key(key)` of its own key).

    **Returns:**

    A `LabelEmbedding`, a `VectorEmbedding`, or `None` when both are `None` (an
    unconditional network).
    """
    if num_classes is not None and condition_size is not None:
        raise ValueError(
            "Pass at most one of `num_classes` (integer class labels) and `condition_size` "
            f"(a float condition vector), got num_classes={num_classes!r} and "
            f"condition_size={condition_size!r}."
        )
    if num_classes is not None:
        return LabelEmbedding(check_int("num_classes", num_classes), size, key=key)
    if condition_size is not None:
        return VectorEmbedding(check_int("condition_size", condition_size), size, key=key)
    return None


def embed_condition(
    name: str,
    embedding: AbstractConditionEmbedding | None,
    condition: ArrayLike | None,
) -> Float[Array, " size"] | None:
    """The embedding of `condition` for the network `name`, or `None` for an unconditional
    network called without one. A ValueError/TypeError at trace time when the call does not
    match how the network was built."""
    if embedding is None:
        if condition is not None:
            raise ValueError(
                f"{name} was built without num_classes or condition_size: it takes no "
                "condition; rebuild it with num_classes=... (integer labels) or "
                "condition_size=... (float vectors) to condition it, or call it as net(t, x)."
            )
        return None
    if condition is None:
        raise ValueError(embedding.usage(name) + ".")
    return embedding(condition, name=name)
