"""Validators shared by every layer: they raise at the call, naming the argument."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def check_num(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


def check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"`{name}` must be a number > 0, got {value!r}.")


def check_callable(score) -> None:
    if not callable(score):
        raise TypeError(f"`score` must be a callable score(t, x), got {type(score).__name__}.")


def check_score(sde, score: Callable, data_shape: tuple[int, ...], where: str) -> None:
    """Checks, by abstract evaluation only, that `score(t, x)` maps one sample of
    `data_shape` (which is `where`, e.g. "the data part of `shape`") to the same shape.

    Call it inside the caller's `filter_jit`: it then costs one trace per compilation, not
    a trace per call (about 4 ms for a small MLP), and still raises at the call."""
    check_callable(score)
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


def check_eps(sde, eps: float | None, meaning: str) -> float:
    """`eps` (default: the SDE's `default_eps`) must lie in (0, T); checked outside jit.
    `meaning` says what eps is for the caller, for the error message."""
    eps = sde.default_eps if eps is None else eps
    T = float(sde.T)
    if not 0 < eps < T:
        raise ValueError(
            f"`eps` must lie in (0, T) = (0, {T}), got {eps}: {meaning} (default: the SDE's "
            "`default_eps`)."
        )
    return eps


def check_finite_rows(name: str, x, fix: str) -> None:
    """Raises if a concrete `(n, ...)` array has NaN or inf, naming the first bad row."""
    if isinstance(x, jax.core.Tracer):
        return
    bad = ~np.isfinite(np.asarray(x).reshape(np.shape(x)[0], -1)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"`{name}` has NaN or inf in {int(bad.sum())} rows (first: row "
            f"{int(np.argmax(bad))}); {fix}."
        )
