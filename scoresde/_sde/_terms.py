"""Diffrax terms whose vector field is built from an SDE and a score, and that say so.

Diffrax's own solvers only call `vf`/`contr`/`prod`, so for them these terms behave like
`ODETerm(lambda t, y, args: drift)`. A solver that needs the structure of the problem (the
exponential integrators in `scoresde._solver` step in log-SNR on the data prediction)
reaches the SDE and the score through them.
"""

import abc

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import static_number
from .._custom_types import Data, Scalar, ScalarLike
from ._base import AbstractLinearSDE, AbstractSDE, ScoreFn, with_args


class AbstractScoreTerm(dfx.AbstractTerm):
    r"""A drift term $\dot x = F(t, x)$ built from an SDE and a score, with the control
    $\mathrm{d}t$ (as `diffrax.ODETerm`).

    - `sde`: the forward SDE.
    - `score`: `score(t, x)` of one sample, or `score(t, x, args)` when the solve carries
      a condition in Diffrax's `args`.
    - `num_steps`: the number of fixed steps of the solve, when the caller knows it (a
      multistep solver lowers its order at the last steps with it); `None` otherwise.
    """

    sde: eqx.AbstractVar[AbstractSDE]
    score: eqx.AbstractVar[ScoreFn]
    num_steps: eqx.AbstractVar[int | None]

    @abc.abstractmethod
    def drift(self, t: ScalarLike, y: Data, args) -> Data:
        """The vector field $F(t, y)$."""

    def data_prediction(self, t: ScalarLike, y: Data, args) -> Data:
        r"""Tweedie's denoiser $\hat x_0 = (y + s(t)^2 \nabla\log p_t(y))/m(t)$: one
        score evaluation. Needs a linear SDE."""
        sde = self.sde
        if not isinstance(sde, AbstractLinearSDE):
            raise TypeError(
                f"The data prediction needs a linear SDE (m(t), s(t)); {type(sde).__name__} "
                "is not one."
            )
        score = with_args(self.score, args)
        var = (sde.std(t) ** 2).astype(y.dtype)
        return (y + var * score(t, y)) / sde.mean_coeff(t).astype(y.dtype)

    def vf(self, t: ScalarLike, y: Data, args) -> Data:
        return self.drift(t, y, args)

    def contr(self, t0: ScalarLike, t1: ScalarLike, **kwargs) -> Scalar:
        return jnp.asarray(t1) - jnp.asarray(t0)

    def prod(self, vf: Data, control: Scalar) -> Data:
        return jax.tree.map(lambda v: v * jnp.asarray(control, v.dtype), vf)


class ProbabilityFlowTerm(AbstractScoreTerm):
    r"""The probability-flow ODE $\dot x = f(t, x) - \tfrac12 g(t)^2 \nabla\log p_t(x)$ as
    a Diffrax term that also exposes its SDE and score. Built by
    `sde.probability_flow_term(score)`.

    **Arguments:**

    - `sde`: the forward SDE.
    - `score`: `score(t, x)` of one sample, or `score(t, x, args)` with a condition.
    - `num_steps`: the number of fixed steps of the solve, if known (default `None`).
    """

    sde: AbstractSDE
    score: ScoreFn
    num_steps: int | None = static_number(default=None)

    def drift(self, t, y, args):
        return self.sde.probability_flow_drift(with_args(self.score, args), t, y)


class ReverseDriftTerm(AbstractScoreTerm):
    r"""The drift of the reverse-time SDE, $f(t, x) - g(t)^2 \nabla\log p_t(x)$, as a
    Diffrax term that also exposes its SDE and score: the first of
    `sde.reverse_terms(score, brownian)`.

    **Arguments:**

    - `sde`: the forward SDE.
    - `score`: `score(t, x)` of one sample, or `score(t, x, args)` with a condition.
    - `num_steps`: the number of fixed steps of the solve, if known (default `None`).
    """

    sde: AbstractSDE
    score: ScoreFn
    num_steps: int | None = static_number(default=None)

    def drift(self, t, y, args):
        return self.sde.reverse_drift(with_args(self.score, args), t, y)
