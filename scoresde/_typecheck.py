"""The public API's runtime type checks, with failures told in one line.

Functions at the API keep their jaxtyping annotations and are checked by beartype, but a
failure is reported as one line that names the argument, what it must be, what it was and,
where there is one, the fix; never the checker's 20-line dump. Before the check, numpy
scalars become Python numbers (every real scalar type is accepted where a Python number
is), and arguments with a normaliser (such as `shape`) are validated completely, so the
outcome does not depend on which tuple item beartype happens to sample.
"""

import functools as ft
import inspect
import re
import types
import typing
from collections.abc import Callable

import jax
import numpy as np
from beartype import beartype
from jaxtyping import jaxtyped, TypeCheckError

from ._checks import as_python_scalar, key_fix


_PARAMETER = re.compile(r"typechecking parameter '(\w+)'")
_AXIS_VALUE = re.compile(r"^(\w+)=(\S+)$", re.MULTILINE)

# What a user most likely means to pass, for the classes that appear in annotations.
_EXAMPLES = {
    "AbstractSampler": "a sampler such as sd.ReverseSDE(num_steps=500)",
    "AbstractSDE": "an SDE such as sd.VPSDE()",
    "AbstractLinearSDE": "a linear SDE (sd.VPSDE(), sd.SubVPSDE() or sd.VESDE())",
    "AbstractDivergence": "a divergence estimator such as sd.ExactDivergence()",
    "Mesh": "a 1-D jax.sharding.Mesh",
    "AbstractObjective": "an objective such as sd.DenoisingScoreMatching(sde)",
    "GradientTransformation": "an Optax optimiser such as optax.adam(1e-3)",
    "Module": "an Equinox module (a model such as sd.NoisePrediction(net, sde))",
}


def as_shape(value, name: str = "shape") -> tuple[int, ...]:
    """`value` as a tuple of Python ints, each >= 1, checked item by item."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise TypeError(
            f"`{name}` must be a tuple (num_samples, *data_shape) of ints, got "
            f"{describe_value(value)}."
        )
    out = []
    for i, s in enumerate(value):
        s = as_python_scalar(s)
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(
                f"`{name}` must be a tuple (num_samples, *data_shape) of ints, but item {i} is "
                f"{describe_value(s)}; write {name}=({', '.join(_int_text(v) for v in value)})."
            )
        out.append(s)
    if not out or any(s < 1 for s in out):
        raise ValueError(
            f"`{name}` must be (num_samples, *data_shape) with every entry >= 1, got {tuple(out)}."
        )
    return tuple(out)


def _int_text(v) -> str:
    try:
        return str(int(v)) if float(v) == int(v) else repr(v)
    except (TypeError, ValueError):
        return repr(v)


def typechecked(fn: Callable | None = None, *, normalise: dict[str, Callable] | None = None):
    """`jaxtyped(typechecker=beartype)` with one-line errors at the public API.

    `normalise` maps argument names to functions applied (and so validated) before the
    type check, e.g. `{"shape": as_shape}`."""
    if fn is None:
        return ft.partial(typechecked, normalise=normalise)
    checked = jaxtyped(typechecker=beartype)(fn)
    signature = inspect.signature(fn)
    normalise = normalise or {}

    @ft.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = signature.bind_partial(*args, **kwargs)
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            value = as_python_scalar(value)
            if name in normalise and value is not None:
                value = normalise[name](value, name)
            bound.arguments[name] = value
        try:
            return checked(*bound.args, **bound.kwargs)
        except TypeCheckError as e:
            message = str(e)
            match = _PARAMETER.search(message)
            # Only a failure on this call's own arguments is the user's; anything else (the
            # return value, a nested call) is a bug to see in full.
            if match is None or f"parameters of {fn.__module__}.{fn.__qualname__}" not in message:
                raise
            name = match.group(1)
            axes = dict(_AXIS_VALUE.findall(message.split("axis annotation", 1)[-1]))
            if "axis annotation" not in message:
                axes = {}
            hint = signature.parameters[name].annotation
            raise argument_error(name, bound.arguments.get(name), hint, axes) from None

    return wrapper


def argument_error(name: str, value, hint, axes: dict[str, str]) -> Exception:
    """The one-line error for argument `name` = `value` failing annotation `hint`."""
    expected = describe_hint(hint, axes)
    got = describe_value(value)
    fix = _fix(name, value, hint)
    text = f"`{name}` must be {expected}, got {got}{'; ' + fix if fix else ''}."
    wrong_shape_only = _is_array(value) and any(_dtype_ok(value, h) for h in _array_hints(hint))
    return (ArrayShapeError if wrong_shape_only else TypeError)(text)


class ArrayShapeError(ValueError, TypeError):
    """A right-typed array of the wrong shape. A `ValueError`, and a `TypeError` as the
    type checker's own error was, so code catching either keeps working."""


def describe_value(value) -> str:
    if isinstance(value, type):
        return f"the class {value.__name__} itself, not an instance"
    if _is_array(value):
        kind = "jax" if isinstance(value, jax.Array) else "numpy"
        return f"a {kind} {value.dtype} array of shape {tuple(value.shape)}"
    if isinstance(value, (str, int, float, complex, bool, type(None))):
        text = repr(value)
        text = text if len(text) <= 40 else text[:37] + "..."
        return f"{type(value).__name__} {text}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__module__.split('.')[0]}.{type(value).__qualname__}"


def describe_hint(hint, axes: dict[str, str] | None = None) -> str:
    axes = axes or {}
    options = _flatten(hint)
    optional = type(None) in options
    options = [o for o in options if o is not type(None)]
    arrays = [o for o in options if _is_array_hint(o)]
    others = [o for o in options if not _is_array_hint(o)]
    parts = []
    if any("prng_key" in a.dtypes for a in arrays):
        parts.append("a JAX PRNG key such as jax.random.key(0)")
    elif arrays:
        parts.extend(dict.fromkeys(_describe_array(a, axes) for a in arrays))
    parts.extend(_describe_other(o) for o in others)
    if optional:
        parts.append("None")
    return " or ".join(parts) if parts else str(hint)


def _flatten(hint) -> list:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [o for a in typing.get_args(hint) for o in _flatten(a)]
    return [hint]


def _is_array_hint(hint) -> bool:
    return hasattr(hint, "dim_str") and hasattr(hint, "dtypes")


def _array_hints(hint) -> list:
    return [o for o in _flatten(hint) if _is_array_hint(o)]


def _describe_array(hint, axes: dict[str, str]) -> str:
    kind = getattr(hint.dtype, "__name__", "")
    kinds = {"Float": "floating-point", "Int": "integer", "Real": "real", "Bool": "boolean"}
    dims = hint.dim_str.split()
    if not dims:
        shape = "a scalar"
    elif dims == ["..."]:
        return f"a {kinds.get(kind, kind.lower())} array"
    else:
        names = [d.lstrip("*_#") or d for d in dims]
        text = ", ".join(
            ("*" if d.startswith("*") else "") + n for d, n in zip(dims, names, strict=True)
        )
        known = [f"{n} = {axes[n]}" for n in names if n in axes]
        shape = f"shape ({text}{',' if len(dims) == 1 else ''})"
        if known:
            shape += f" with {', '.join(known)} from the other arguments"
    return f"a {kinds.get(kind, kind.lower())} array of {shape}"


def _describe_other(hint) -> str:
    if isinstance(hint, type):
        if hint.__name__ in _EXAMPLES:
            return _EXAMPLES[hint.__name__]
        if hint.__module__ == "builtins":
            return f"a {hint.__name__}"
        if hint.__module__ == "collections.abc" and hint.__name__ == "Callable":
            return "a callable"
        return f"a {hint.__name__}"
    origin = typing.get_origin(hint)
    if origin is not None and [getattr(a, "__name__", "") for a in typing.get_args(hint)] == [
        "Device"
    ]:
        return "a list of jax devices such as jax.devices()"
    if origin is not None:
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        inner = ", ".join(getattr(a, "__name__", str(a)) for a in args)
        return f"a {getattr(origin, '__name__', str(origin))} of {inner}"
    return str(hint).replace("typing.", "")


def _is_array(value) -> bool:
    return isinstance(value, (jax.Array, np.ndarray))


def _dtype_ok(value, hint) -> bool:
    return str(value.dtype) in hint.dtypes


def _fix(name: str, value, hint) -> str:
    if isinstance(value, type):
        return f"call it: {value.__name__}(...)"
    arrays = _array_hints(hint)
    if any("prng_key" in a.dtypes for a in arrays):
        return key_fix(name, value)
    if not arrays:
        return ""
    float_only = all(getattr(a.dtype, "__name__", "") == "Float" for a in arrays)
    if isinstance(value, (list, tuple)) or (_is_array(value) and not _dtype_ok(value, arrays[0])):
        if float_only:
            return f"convert it with jnp.asarray({name}, dtype=float)"
        return f"convert it with jnp.asarray({name})"
    return ""
