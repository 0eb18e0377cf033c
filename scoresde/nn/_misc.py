"""Argument checks shared by the networks: static misuse fails at the call with a message."""

import jax.numpy as jnp

from .._checks import is_integer
from .._custom_types import Array, ScalarLike


def check_int(name: str, value, minimum: int = 1) -> int:
    """`value` as an int `>= minimum`, or a ValueError naming the argument."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")
    return int(value)


def check_time(name: str, t: ScalarLike) -> Array:
    """`t` as a 0-d array, or a ValueError if it is not a scalar."""
    t = jnp.asarray(t)
    if t.ndim != 0:
        raise ValueError(
            f"{name} expects a scalar time `t` (one sample, no batch axis), got shape "
            f"{t.shape}; call it on one sample and `jax.vmap` over a batch."
        )
    return t


def check_data(name: str, expected: tuple[int, ...], x: Array) -> None:
    """A ValueError at trace time if one sample `x` does not have the built-for shape."""
    if tuple(x.shape) != tuple(expected):
        raise ValueError(
            f"{name} was built for data of shape {tuple(expected)}, got {tuple(x.shape)}; "
            "networks are called on ONE sample without a batch axis (use `jax.vmap` for a "
            "batch), or rebuild the network for this data shape."
        )
