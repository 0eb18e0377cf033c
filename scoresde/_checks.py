"""Validators shared by every layer: they raise at the call, naming the argument."""

import contextlib
import numbers
import re
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._condition import accepts_condition, conditional_parts, requires_condition


def is_integer(value) -> bool:
    """A Python or numpy integer (not a bool): every integer type a user may pass."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
    """A Python or numpy real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def as_python_scalar(value):
    """A numpy scalar (`np.float32(0.1)`, `np.int64(50)`) as the Python number it equals;
    anything else unchanged."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def static_number(**kwargs):
    """A static hyperparameter field (a step count, a step size, `eps`). Numpy scalars are
    stored as the Python numbers they equal, so they hash, compare and serialise like them."""
    return eqx.field(static=True, converter=as_python_scalar, **kwargs)


def check_key(key, name: str = "key") -> None:
    """A JAX PRNG key: a typed key (`jax.random.key(0)`) or raw `uint32` key data."""
    if isinstance(key, (jax.Array, np.ndarray)) and not isinstance(key, jax.core.Tracer):
        typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()
        raw = key.dtype == np.uint32 and key.shape in ((2,), (4,))
        if typed or raw:
            return
    elif isinstance(key, jax.core.Tracer):
        return
    given = f"{type(key).__name__} {key!r}" if is_real(key) else type(key).__name__
    if hasattr(key, "shape") and hasattr(key, "dtype"):
        given = f"an array of dtype {key.dtype} and shape {tuple(key.shape)}"
    raise TypeError(
        f"`{name}` must be a JAX PRNG key such as jax.random.key(0), got {given}; "
        f"{key_fix(name, key)}."
    )


def key_fix(name: str, value) -> str:
    """How to turn what was passed as a key into one: an int is taken as the seed."""
    return f"pass {name}=jax.random.key({value if is_integer(value) else 'seed'})"


def check_num(name: str, value: int, minimum: int = 1) -> None:
    if not is_integer(value) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


def describe(sde) -> str:
    """`VPSDE(beta_min=0.1, beta_max=20, T=1)`: the SDE's class and constants, for error
    messages (Equinox's repr shows only `f32[]`). Traced constants show as `?`."""
    parts = []
    for name, value in vars(sde).items():
        if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0:
            shown = "?" if isinstance(value, jax.core.Tracer) else f"{float(value):g}"
            parts.append(f"{name}={shown}")
    return f"{type(sde).__name__}({', '.join(parts)})"


def check_finite(name: str, value) -> None:
    """Raises if a hyperparameter (a Python, NumPy or 0-d JAX number) is inf or NaN; it
    would otherwise be accepted and turn a whole solve into NaN much later. A traced value
    is not checked (it has no value yet)."""
    if isinstance(value, jax.core.Tracer):
        return
    try:
        finite = bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
    except (TypeError, ValueError):
        return  # not a number: the caller's type check names it
    if not finite:
        raise ValueError(f"`{name}` must be a finite number, got {value!r}; pass a finite value.")


def check_positive(name: str, value: float) -> None:
    check_finite(name, value)
    if not (is_real(value) and value > 0):
        raise ValueError(f"`{name}` must be a number > 0, got {value!r}.")


def check_callable(score, name: str = "score", call: str = "(t, x)") -> None:
    if not callable(score):
        hint = "; use the result's `.model`" if type(score).__name__ == "FitResult" else ""
        raise TypeError(
            f"`{name}` must be a callable {name}{call}, got {type(score).__name__}{hint}."
        )


def check_score(
    score: Callable,
    data_shape: tuple[int, ...],
    where: str,
    *,
    t: float,
    condition=None,
    name: str = "score",
) -> None:
    """Checks, by abstract evaluation only, that `score(t, x)` (or `score(t, x, c)` when
    `condition` is given: the shapes and dtypes of ONE sample's condition) maps one sample
    of `data_shape` (which is `where`, e.g. "the data part of `shape`") to the same shape.

    The output's dtype must be x's (`check_score_dtype`).

    Call it inside the caller's `filter_jit`: it then costs one trace per compilation, not
    a trace per call (about 4 ms for a small MLP), and still raises at the call."""
    check_callable(score, name)
    x = jax.ShapeDtypeStruct(data_shape, jnp.result_type(float))
    if condition is not None and not accepts_condition(score):
        raise ValueError(
            f"`condition=` was given, but `{name}` takes no condition (it is called as "
            f"{name}(t, x)); leave out `condition=`, or pass a conditional {name}(t, x, c)."
        )
    args = (t, x) if condition is None else (t, x, condition)
    try:
        out = eqx.filter_eval_shape(score, *args)
    except _TRACER_ERRORS as e:
        raise ValueError(
            f"`{name}` uses a traced value (t, x or the condition) as a Python value, e.g. in "
            f"an `if`, `float()` or numpy: the {name} is traced under jax.jit, so write the "
            "branch with jnp.where or jax.lax.cond and the maths with jax.numpy. The "
            f"{name} raised: {type(e).__name__}: {_first_line(e)}"
        ) from None
    except Exception as e:
        if condition is None and (requires_condition(score) or conditional_parts(score)):
            raise ValueError(
                f"`{name}` is conditional ({name}(t, x, c)): pass `condition=`, one condition "
                "per sample (for a class-conditional model, its null label for unconditional "
                "samples)."
            ) from e
        if condition is not None and _runs_without_condition(score, t, x):
            shapes = jax.tree.map(lambda c: c.shape, condition)
            raise ValueError(
                f"`{name}` runs as {name}(t, x) but fails as {name}(t, x, c) with one row of "
                f"`condition` (shapes {shapes}): either it takes no condition (leave out "
                f"`condition=`) or that condition does not fit it. The {name} raised: "
                f"{type(e).__name__}: {_first_line(e)}"
            ) from e
        call = f"{name}(t, x)" if condition is None else f"{name}(t, x, c)"
        raise ValueError(
            f"`{name}` failed on one sample of shape {data_shape} ({where}). It is called as "
            f"{call} on ONE sample, without a batch axis; check that the shapes match. The "
            f"{name} raised: {type(e).__name__}: {_first_line(e)}"
        ) from e
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != data_shape:
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"`{name}(t, x)` must return an array shaped like x, {data_shape} ({where}), but "
            f"it returned {got}."
        )
    check_score_dtype(out.dtype, x.dtype, name)


def check_score_dtype(got, want, name: str = "score") -> None:
    """A score is the real gradient of a log-density, as precise as `x`: its dtype must be
    `x`'s. An integer score rounds every step; float16/bfloat16 throws away precision the
    sampler then carries; a complex one is not a gradient of a real density (and Diffrax
    fails on it deep inside a solve)."""
    got, want = jnp.dtype(got), jnp.dtype(want)
    if got == want:
        return
    if jnp.issubdtype(got, jnp.complexfloating):
        fix = (
            "a score is the real gradient of a log-density; return a real array "
            "(`jnp.real(out).astype(x.dtype)` if the imaginary part is zero)"
        )
    else:
        fix = "compute it in floating point and return `out.astype(x.dtype)`"
    raise TypeError(f"`{name}(t, x)` must return x's dtype, {want}, but it returned {got}: {fix}.")


# Raised when a traced value meets Python control flow or numpy: not a shape problem.
_TRACER_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


def _runs_without_condition(score: Callable, t, x) -> bool:
    try:
        eqx.filter_eval_shape(score, t, x)
    except Exception:
        return False
    return True


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


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


def check_level_eps(sde, eps: float | None, meaning: str) -> float:
    """The time of the smallest level of a noise-level ladder (`AnnealedLangevin`,
    `MultiNoiseDSM`): `eps` if given (checked as by `check_eps`), else the SDE's
    `level_eps`, which must lie in (0, T); checked outside jit."""
    if eps is not None:
        return check_eps(sde, eps, meaning)
    eps, T = float(sde.level_eps), float(sde.T)
    if not 0 < eps < T:
        raise ValueError(
            f"{describe(sde)} reaches its smallest declared noise only at t = {eps:g}, outside "
            f"(0, T) = (0, {T:g}), so the default noise levels cannot end there; pass `eps=`, "
            "the time of the smallest level, or widen the SDE's noise range."
        )
    return eps


def check_nonempty(name: str, x, what: str) -> None:
    """Raises if an `(n, ...)` array has no rows (n = 0) or a zero-sized data shape: there
    is nothing to compute `what` of, and NumPy/JAX would fail on an empty reduction."""
    shape = tuple(np.shape(x))
    if len(shape) >= 1 and (shape[0] == 0 or 0 in shape[1:]):
        raise ValueError(
            f"`{name}` is empty (shape {shape}): {what} needs at least one row and a non-empty "
            "data shape; pass an array of shape (n, *data_shape) with n >= 1."
        )


def check_finite_rows(name: str, x, fix: str) -> None:
    """Raises if a concrete `(n, ...)` array has NaN or inf, naming the first bad row."""
    if isinstance(x, jax.core.Tracer) or np.size(x) == 0:
        return
    bad = ~np.isfinite(np.asarray(x).reshape(np.shape(x)[0], -1)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"`{name}` has NaN or inf in {int(bad.sum())} rows (first: row "
            f"{int(np.argmax(bad))}); {fix}."
        )


def check_weights(weights: np.ndarray, name: str = "weights") -> None:
    """Mixture weights: finite, non-negative, summing to 1 (to float32 round-off)."""
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"`{name}` contains NaN or inf: {weights}.")
    if np.any(weights < 0):
        bad = int(np.argmin(weights))
        raise ValueError(
            f"`{name}` must be non-negative (they are the components' probabilities), but "
            f"{name}[{bad}] = {weights[bad]:.6g}."
        )
    if abs(weights.sum() - 1) > 1e-5:
        raise ValueError(
            f"`{name}` must sum to 1, got sum {weights.sum():.6g}; divide them by their sum."
        )


_EQUINOX_MESSAGE = re.compile(r"EquinoxRuntimeError: (.+?)(?:\n\s*\n-{5,}|\Z)", re.DOTALL)


@contextlib.contextmanager
def runtime_errors():
    """A check that fails while a jitted run executes (`eqx.error_if`, Diffrax's own) as
    one line naming the cause, instead of Equinox's dump of both stacks. The run is waited
    for inside, so the error surfaces at the call that caused it."""
    try:
        yield
    except eqx.EquinoxRuntimeError as e:
        raise RuntimeError(equinox_message(e) or _first_line(e)) from None


def equinox_message(error: Exception) -> str | None:
    """The message an `eqx.error_if` was given, on one line, from the EquinoxRuntimeError
    that carries it among both stacks; `None` if it cannot be found."""
    found = _EQUINOX_MESSAGE.findall(str(error))
    return " ".join(found[-1].split()) if found else None
