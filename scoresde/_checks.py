"""Validators shared by every layer: they raise at the call, naming the argument."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp


def check_num(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


def check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"`{name}` must be a number > 0, got {value!r}.")


def check_score(sde, score: Callable, data_shape: tuple[int, ...], where: str) -> None:
    """Checks, by abstract evaluation only, that `score(t, x)` maps one sample of
    `data_shape` (which is `where`, e.g. "the data part of `shape`") to the same shape."""
    if not callable(score):
        raise TypeError(f"`score` must be a callable score(t, x), got {type(score).__name__}.")
    x = jax.ShapeDtypeStruct(data_shape, jnp.result_type(float))
    try:
        out = eqx.filter_eval_shape(score, sde.T, x)
    except Exception as e:
        raise ValueError(
            f"`score` failed on one sample of shape {data_shape} ({where}). A score is called "
            "as score(t, x) on ONE sample, without a batch axis; check that the shapes match. "
            f"The score raised: {type(e).__name__}: {e}"
        ) from e
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != data_shape:
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"`score(t, x)` must return an array shaped like x, {data_shape} ({where}), but "
            f"it returned {got}."
        )
