"""Fixed (untrained) embeddings of the scalar time or noise-level input."""

import math

import equinox as eqx
import jax.numpy as jnp

from .._checks import is_integer, static_number
from .._custom_types import Array, Float, ScalarLike
from ._misc import check_time


class SinusoidalEmbedding(eqx.Module):
    r"""Fixed sinusoidal features of a scalar $t$ (Vaswani et al., 2017; Ho et al., 2020).

    $$e(t) = \big(\sin(\omega_1 t), \dots, \sin(\omega_K t),\;
    \cos(\omega_1 t), \dots, \cos(\omega_K t)\big),\qquad K = \text{size}/2,$$

    with angular frequencies $\omega_k$ geometrically spaced from `min_freq` to `max_freq`
    (radians per unit of $t$). The defaults, $\omega \in [1, 1000]$, resolve
    $t \in [0, 1]$ to about $10^{-3}$ and match DDPM's embedding of the integer step
    $1000\,t$ with its slowest (near-constant) frequencies dropped; they also suit EDM's
    $c_\text{noise} = \tfrac14\ln\sigma \in [-1.2, 1.3]$. The frequencies are computed from
    the static hyperparameters at trace time, so they are constants, not trainable leaves.

    **Arguments:**

    - `size`: the (even, positive) number of features.
    - `min_freq`, `max_freq`: `0 < min_freq <= max_freq`, the slowest and fastest angular
      frequencies.

    Called as `embedding(t)` with a scalar `t`; returns shape `(size,)`.
    """

    size: int = static_number()
    min_freq: float = static_number()
    max_freq: float = static_number()

    def __init__(self, size: int, *, min_freq: float = 1.0, max_freq: float = 1000.0):
        if not is_integer(size) or size < 2 or size % 2:
            raise ValueError(f"`size` must be an even int >= 2, got {size!r}.")
        if not (0 < min_freq <= max_freq) or not math.isfinite(max_freq):
            raise ValueError(
                "`min_freq` and `max_freq` must satisfy 0 < min_freq <= max_freq < inf, got "
                f"min_freq={min_freq}, max_freq={max_freq}."
            )
        self.size = size
        self.min_freq = float(min_freq)
        self.max_freq = float(max_freq)

    @property
    def frequencies(self) -> Float[Array, " half"]:
        """The angular frequencies $\\omega_k$, shape `(size // 2,)`."""
        return jnp.geomspace(self.min_freq, self.max_freq, self.size // 2)

    def __call__(self, t: ScalarLike) -> Float[Array, " size"]:
        t = check_time("SinusoidalEmbedding", t)
        t = t.astype(jnp.result_type(float))
        arg = self.frequencies.astype(t.dtype) * t
        return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)])
