"""What the exponential integrators share: reaching the SDE and the score through the
terms, the log-SNR step, the history in the solver state, and the order schedule."""

import abc
import math
from collections.abc import Callable
from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp

# Diffrax wraps every term in a `WrapTerm` that flips time when t1 < t0; the solver must
# see through it to reach the SDE and the score. (Not re-exported by Diffrax 0.7.)
from diffrax._term import WrapTerm

from .._checks import is_integer
from .._custom_types import Array, Data, Int, Scalar
from .._sde import AbstractLinearSDE, AbstractScoreTerm, ProbabilityFlowTerm, ReverseDriftTerm


LOWER_ORDER_FINAL_BELOW = 15
"""`lower_order_final` applies to solves of fewer fixed steps than this (as diffusers'
schedulers do): there the last steps are long and high order is unstable; above it a
first-order last step would cap the convergence order."""


def exprel(k: int, x: Scalar) -> Scalar:
    r"""$\mathrm{exprel}_k(x) = \big(e^x - \sum_{j<k} x^j/j!\big)/x^k = \sum_{j\ge k}
    x^{j-k}/j!$, without the cancellation of the direct formula near 0 (a series there)."""
    x = jnp.asarray(x)
    small = jnp.abs(x) < 2.0
    xs = jnp.where(small, x, 0.0)
    series = jnp.zeros_like(xs)
    for j in reversed(range(k, k + 24)):  # Horner; the dropped terms are < 1e-16 of the sum
        series = series * xs + 1.0 / math.factorial(j)
    xd = jnp.where(small, 2.0, x)
    direct = (jnp.expm1(xd) - sum(xd**j / math.factorial(j) for j in range(1, k))) / xd**k
    return jnp.where(small, series, direct)


def unpack_terms(terms) -> tuple[AbstractScoreTerm, dfx.AbstractTerm | None, Array | int]:
    """The score term, the noise term (still wrapped, so its increments follow the solve's
    direction) or `None` for an ODE, and the direction of time (+1 or -1)."""
    noise = None
    if isinstance(terms, dfx.MultiTerm):
        if len(terms.terms) != 2:
            raise TypeError(_TERMS_HELP)
        terms, noise = terms.terms
    direction = 1
    if isinstance(terms, WrapTerm):
        terms, direction = terms.term, terms.direction
    if not isinstance(terms, AbstractScoreTerm):
        raise TypeError(_TERMS_HELP)
    if (noise is None) != isinstance(terms, ProbabilityFlowTerm) or (
        noise is not None and not isinstance(terms, ReverseDriftTerm)
    ):
        raise TypeError(_TERMS_HELP)
    if not isinstance(terms.sde, AbstractLinearSDE):
        raise TypeError(
            f"The exponential integrators (DDIM, DPMSolverPP, UniPC) step in the log-SNR of a "
            f"linear SDE (VPSDE, SubVPSDE, VESDE); {type(terms.sde).__name__} is not one. Use "
            "a Diffrax solver such as diffrax.Heun() or diffrax.Tsit5()."
        )
    return terms, noise, direction


_TERMS_HELP = (
    "The exponential integrators need the terms the samplers build: "
    "sde.probability_flow_term(score) for the probability-flow ODE, or "
    "sde.reverse_terms(score, brownian) for the reverse SDE. Use them through "
    "ProbabilityFlowODE(solver=...) or ReverseSDE(solver=...)."
)


def half_log_snr(sde: AbstractLinearSDE, t) -> Scalar:
    r"""$\lambda(t) = \log(m(t)/s(t)) = -\log\sigma(t)$ (half the log-SNR, DPM-Solver's
    $\lambda$)."""
    return -jnp.log(sde.sigma(t))


def standard_normal(noise: dfx.AbstractTerm, t0, t1) -> Data:
    """The Brownian increment over the step, divided by the square root of its length."""
    w = noise.contr(t0, t1)
    return w / jnp.sqrt(jnp.abs(t1 - t0)).astype(w.dtype)


class AbstractExponentialSolver(dfx.AbstractItoSolver):
    r"""An exponential integrator for the probability-flow ODE (or the reverse SDE) of a
    linear SDE, as a Diffrax solver.

    In the half log-SNR $\lambda = \log(m/s)$ and the data prediction
    $\hat x_0(x, t) = (x + s(t)^2 \nabla\log p_t(x))/m(t)$, the probability-flow ODE
    reads (Lu et al. 2022)

    $$x_{t_b} = \frac{s_b}{s_a} x_{t_a} + s_b \int_{\lambda_a}^{\lambda_b} e^{\lambda}
    \hat x_0(x_\lambda, \lambda)\,\mathrm d\lambda:$$

    its linear part is integrated exactly and only $\hat x_0$ is approximated, by a
    polynomial in $\lambda$ through the data predictions of earlier steps (the multistep
    history, kept in the solver state). The solver reaches $m$, $s$ and the score through
    the terms the samplers build (`ProbabilityFlowTerm`, `ReverseDriftTerm`); with the
    reverse SDE's terms it takes the stochastic variant of its step, with the noise from
    the solve's Brownian path. Each step evaluates the score once.

    Fixed steps only: the solvers make no error estimate, and an adaptive step would
    spoil the history.
    """

    solver_order: eqx.AbstractVar[int]
    lower_order_final: eqx.AbstractVar[bool]

    term_structure: ClassVar = dfx.AbstractTerm
    interpolation_cls: ClassVar[Callable[..., dfx.LocalLinearInterpolation]] = (
        dfx.LocalLinearInterpolation
    )
    max_order: ClassVar[int] = 3
    supports_sde: ClassVar[bool] = True

    def __check_init__(self):
        if not is_integer(self.solver_order) or not 1 <= self.solver_order <= self.max_order:
            orders = ", ".join(str(k) for k in range(1, self.max_order + 1))
            raise ValueError(
                f"`order` of {type(self).__name__} must be one of {orders} (the orders "
                f"implemented), got {self.solver_order!r}."
            )

    def order(self, terms) -> int:
        return self.solver_order

    def strong_order(self, terms):
        return None

    @property
    @abc.abstractmethod
    def history_size(self) -> int:
        """How many earlier data predictions the state keeps."""

    def step_order(self, i: Int[Array, ""], num_steps: int | None) -> Int[Array, ""]:
        """The order of step `i`: lower at the first steps (no history yet) and, with
        `lower_order_final` on a short solve, at the last ones."""
        q = jnp.minimum(self.solver_order, i + 1)
        if self.lower_order_final and num_steps is not None and num_steps < LOWER_ORDER_FINAL_BELOW:
            q = jnp.minimum(q, num_steps - i)
        return jnp.maximum(q, 1)

    def init(self, terms, t0, t1, y0, args):
        unpack_terms(terms)
        k = self.history_size
        dtype = y0.dtype
        return {
            "i": jnp.zeros((), jnp.int32),
            "lams": jnp.zeros((k,), dtype),
            "ds": jnp.zeros((k,) + y0.shape, dtype),
        }

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
