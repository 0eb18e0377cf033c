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


class AbstractClassConditional(eqx.Module):
    """Anything conditioned on integer class labels `0 .. num_classes - 1`, where the extra
    label `num_classes` is the null label (no class: the unconditional model).

    The entry functions find every such part inside a score and check concrete labels
    against it before any work, so an out-of-range label fails at the call instead of
    being clamped by a gather.
    """

    num_classes: eqx.AbstractVar[int]


class BoundScore(eqx.Module):
    """`score(t, x, condition)` seen as a score `(t, x)` of one sample."""

    score: Callable
    condition: object

    def __call__(self, t, x):
        return self.score(t, x, self.condition)


def bind(score: Callable, condition) -> Callable:
    """`score` itself without a condition, else the score with `condition` bound."""
    return score if condition is None else BoundScore(score, condition)


def _leading_axes(condition) -> set[int]:
    return {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in jax.tree.leaves(condition)}


def check_condition(condition, num: int, what: str) -> None:
    """Every leaf of `condition` has a leading axis of `num` (`what` names it)."""
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
    condition = jax.tree.map(jnp.asarray, condition)
    check_condition(condition, num, what)
    check_labels(score, condition)
    return condition


def one_condition(condition):
    """The shapes and dtypes of one row of a batched condition (`None` stays `None`)."""
    if condition is None:
        return None
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), condition)


def class_conditional_parts(score) -> list[AbstractClassConditional]:
    is_part = lambda node: isinstance(node, AbstractClassConditional)  # noqa: E731
    return [node for node in jax.tree.leaves(score, is_leaf=is_part) if is_part(node)]


def check_labels(score, condition) -> None:
    """Concrete integer labels must lie in `[0, num_classes]` for every class-conditional
    part of `score` (the top value is the null label)."""
    parts = class_conditional_parts(score)
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
