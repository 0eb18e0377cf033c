"""The linear noise schedule shared by the VP and sub-VP SDEs."""

import jax.numpy as jnp

from .._custom_types import Array, Scalar, ScalarLike
from ._base import _concrete, _require


def check_betas(beta_min: Array, beta_max: Array, T: Array) -> None:
    if not _concrete(beta_min, beta_max, T):
        return
    _require(float(beta_min) >= 0, f"`beta_min` must be >= 0, got {float(beta_min)}.")
    _require(
        float(beta_max) > 0 and float(beta_max) >= float(beta_min),
        f"`beta_max` must be > 0 and >= `beta_min`, got beta_min={float(beta_min)}, "
        f"beta_max={float(beta_max)}; swap them if they are the wrong way round.",
    )
    _require(float(T) > 0, f"`T` must be > 0, got {float(T)}.")


def beta(beta_min: Array, beta_max: Array, t: ScalarLike) -> Scalar:
    r"""$\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$."""
    return beta_min + t * (beta_max - beta_min)


def integrated_beta(beta_min: Array, beta_max: Array, t: ScalarLike) -> Scalar:
    r"""$\alpha(t) = \int_0^t \beta
    = t\beta_{\min} + \tfrac12 t^2 (\beta_{\max} - \beta_{\min})$."""
    return t * beta_min + 0.5 * t**2 * (beta_max - beta_min)


def t_from_integrated_beta(beta_min: Array, beta_max: Array, alpha: ScalarLike) -> Scalar:
    """Inverts `integrated_beta`; the rationalised root stays exact when beta_max == beta_min."""
    root = jnp.sqrt(beta_min**2 + 2 * (beta_max - beta_min) * alpha)
    return 2 * alpha / (beta_min + root)
