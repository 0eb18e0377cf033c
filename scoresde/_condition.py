"""Conditioning: how one condition per sample reaches a score.

A conditional score is `score(t, x, c)` on ONE sample and ITS condition `c` (any pytree).
The entry functions (`sample`, `log_prob`, `fit`) take `condition=` with a leading axis of
the batch, vmap over it, and bind each sample's condition into the score, so samplers and
objectives keep seeing an ordinary `score(t, x)`.
"""

import inspect
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


class AbstractConditional(eqx.Module):
    """A part of a score that consumes the score's condition (a network's condition
    embedding, an exact class-conditional score): a score holding one needs `condition=`.
    The entry functions look for such parts in the score's pytree, to say so at the call.
    """


class AbstractClassConditional(AbstractConditional):
    """Anything conditioned on integer class labels `0 .. num_classes - 1`, where the extra
    label `num_classes` is the null label (no class: the unconditional model).

    The entry functions find such parts in the score's pytree (not inside closures or
    past an `AbstractConditionBoundary`) and check concrete labels against them before
    any work. Inside, a label outside `[0, num_classes]` must give NaN, never a clamped
    lookup, so that it cannot pass silently where no check can see it.
    """

    num_classes: eqx.AbstractVar[int]


class AbstractConditionBoundary(eqx.Module):
    """A score built from another score whose condition is NOT its own (a score with its
    condition bound, posterior guidance around a class-conditional prior): the search for
    conditional parts stops here."""


class BoundScore(AbstractConditionBoundary):
    """`score(t, x, condition)` seen as a score `(t, x)` of one sample."""

    score: Callable
    condition: object

    def __call__(self, t, x):
        return self.score(t, x, self.condition)


def bind(score: Callable, condition) -> Callable:
    """`score` itself without a condition, else the score with `condition` bound."""
    return score if condition is None else BoundScore(score, condition)


def _stop(node) -> bool:
    return isinstance(node, (AbstractConditional, AbstractConditionBoundary))


def conditional_parts(score, kind: type = AbstractConditional) -> list:
    """The parts of `score` (in its pytree, down to any boundary) that consume its
    condition, of type `kind`."""
    return [node for node in jax.tree.leaves(score, is_leaf=_stop) if isinstance(node, kind)]


def _leading_axes(condition) -> set[int]:
    return {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in jax.tree.leaves(condition)}


def check_condition(condition, num: int, what: str) -> None:
    """Every leaf of `condition` has a leading axis of `num` (`what` names it)."""
    if isinstance(condition, (list, tuple)) and all(
        isinstance(c, (int, float, np.number)) for c in condition
    ):
        raise ValueError(
            f"`condition` is a Python {type(condition).__name__} of {len(condition)} numbers, "
            "which JAX reads as a pytree of scalars; pass an array: jnp.asarray(condition)."
        )
    leaves = jax.tree.leaves(condition)
    if not leaves:
        raise ValueError("`condition` is empty; pass an array (or pytree of arrays), or None.")
    axes = _leading_axes(condition)
    if axes != {num}:
        got = sorted(axes)
        shown = "a scalar" if got == [-1] else f"leading axis {got if len(got) > 1 else got[0]}"
        raise ValueError(
            f"`condition` must have a leading axis of {what} ({num}), one condition per row, "
            f"got {shown}. To share one condition, broadcast it: "
            f"jnp.broadcast_to(c, ({num}, *c.shape))."
        )


def prepare_condition(score, condition, num: int, what: str):
    """The condition as a pytree of JAX arrays with a leading axis of `num`, checked at the
    call (leading axis, class labels against `score`); `None` stays `None`."""
    if condition is None:
        return None
    check_condition(condition, num, what)
    condition = jax.tree.map(jnp.asarray, condition)
    check_labels(score, condition)
    return condition


def one_condition(condition):
    """The shapes and dtypes of one row of a batched condition (`None` stays `None`)."""
    if condition is None:
        return None
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), condition)


def check_labels(score, condition) -> None:
    """Concrete integer labels must lie in `[0, num_classes]` for every class-conditional
    part of `score` (the top value is the null label)."""
    parts = conditional_parts(score, AbstractClassConditional)
    if not parts or isinstance(condition, jax.core.Tracer):
        return
    if not isinstance(condition, (np.ndarray, jax.Array, int, np.integer)):
        return  # a pytree of several arrays is not a label
    labels = np.asarray(condition)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"`condition` must hold integer class labels for this class-conditional score, got "
            f"dtype {labels.dtype}; pass e.g. jnp.asarray(labels, dtype=int)."
        )
    top = min(part.num_classes for part in parts)
    if labels.size and (labels.min() < 0 or labels.max() > top):
        raise ValueError(
            f"`condition` holds labels in [{labels.min()}, {labels.max()}], but this score knows "
            f"classes 0..{top - 1} and the null label {top}; labels must lie in [0, {top}]."
        )


def check_null_label(score, null, name: str = "null_condition") -> None:
    """A null condition given as an integer label must be THE null label of the score's
    class-conditional parts (`num_classes`), not a real class."""
    parts = conditional_parts(score, AbstractClassConditional)
    value = np.asarray(null) if not isinstance(null, jax.core.Tracer) else None
    if not parts or value is None or value.ndim or not np.issubdtype(value.dtype, np.integer):
        return
    top = min(part.num_classes for part in parts)
    if int(value) != top:
        raise ValueError(
            f"`{name}` must be the null label {top} (= num_classes) of this score, got "
            f"{int(value)}: a real class as the null condition would merge that class with "
            "'no class'."
        )


def real_number(name: str, value) -> float:
    """`value` (a Python, NumPy or 0-d JAX real) as a float, or a TypeError naming it."""
    if isinstance(value, bool) or not (
        isinstance(value, (int, float, np.integer, np.floating))
        or (isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0)
    ):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}.")
    return float(value)


def requires_condition(score: Callable) -> bool:
    """Whether `score`'s signature demands a third positional argument (a condition)."""
    try:
        sig = inspect.signature(score)
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 3


def accepts_condition(score: Callable) -> bool:
    """Whether `score`'s signature can take a third positional argument."""
    try:
        sig = inspect.signature(score)
    except (TypeError, ValueError):
        return True
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3
