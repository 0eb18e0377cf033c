"""How the divergence of the probability-flow drift is computed along the ODE."""

import abc
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_num, static_number
from .._custom_types import Array, Data, Float, PRNGKeyArray, Scalar
from .._numerics import normal


class AbstractDivergence(eqx.Module):
    r"""Computes $\nabla\cdot f(x) = \operatorname{tr}\,\partial f/\partial x$ of a vector
    field of one sample, together with $f(x)$ itself (one linearisation serves both)."""

    needs_key: eqx.AbstractClassVar[bool]

    def probes(self, key: PRNGKeyArray | None, x: Data) -> Float[Array, "m *data"] | None:
        """The random probes for one sample, drawn once and held fixed along the path."""
        return None

    @abc.abstractmethod
    def __call__(
        self, f: Callable[[Data], Data], x: Data, probes: Array | None
    ) -> tuple[Data, Scalar]:
        """Returns `(f(x), div f(x))`."""


class ExactDivergence(AbstractDivergence):
    r"""The exact trace $\sum_i e_i^\top (\partial f/\partial x)\, e_i$: $d$
    Jacobian-vector products of one linearisation. Exact, and cheap in low dimension."""

    needs_key = False

    def __call__(self, f, x, probes):
        del probes
        fx, jvp = jax.linearize(f, x)
        basis = jnp.eye(x.size, dtype=x.dtype).reshape(x.size, *x.shape)
        diag = jax.vmap(lambda e: jnp.sum(e * jvp(e)))(basis)
        return fx, jnp.sum(diag)


class HutchinsonDivergence(AbstractDivergence):
    r"""Hutchinson's unbiased estimator $\frac1M\sum_{m=1}^M v_m^\top
    (\partial f/\partial x)\, v_m$ with $\mathbb E[vv^\top] = I$ (Grathwohl et al., 2019):
    $M$ Jacobian-vector products whatever the dimension. The probes are drawn once per
    sample and held fixed along the ODE path, so the integrated log-density is an unbiased
    estimate whose variance falls as $1/M$.

    **Arguments:**

    - `num_probes`: $M$ (default 1).
    - `probe`: `"rademacher"` (default; lower variance) or `"gaussian"`.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{grathwohl2019ffjord,
          title={FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
                 Models},
          author={Grathwohl, Will and Chen, Ricky T. Q. and Bettencourt, Jesse and
                  Sutskever, Ilya and Duvenaud, David},
          booktitle={ICLR}, year={2019}
        }
        ```
    """

    num_probes: int = static_number(default=1)
    probe: Literal["rademacher", "gaussian"] = eqx.field(static=True, default="rademacher")
    needs_key = True

    def __check_init__(self):
        check_num("num_probes", self.num_probes)
        if self.probe not in ("rademacher", "gaussian"):
            raise ValueError(f"`probe` must be 'rademacher' or 'gaussian', got {self.probe!r}.")

    def probes(self, key, x):
        shape = (self.num_probes, *x.shape)
        if self.probe == "rademacher":
            return jr.rademacher(key, shape, x.dtype)
        return normal(key, shape, x.dtype)

    def __call__(self, f, x, probes):
        fx, jvp = jax.linearize(f, x)
        quads = jax.vmap(lambda v: jnp.sum(v * jvp(v)))(probes)
        return fx, jnp.mean(quads)
