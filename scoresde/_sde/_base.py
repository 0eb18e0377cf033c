"""Abstract forward SDEs and the Diffrax terms they declare."""

import abc
import math
import os
import sys
import warnings
from collections.abc import Callable
from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np

from .._checks import check_finite, describe as describe, is_real
from .._custom_types import Array, Data, PRNGKeyArray, Scalar, ScalarLike
from .._numerics import normal, scalar_barrier


ScoreFn = Callable[[Scalar, Data], Data]


def _as_scalar(name: str, value: ScalarLike) -> Array:
    """Turns a hyperparameter into a float array leaf, so changing it does not recompile."""
    if not (is_real(value) or isinstance(value, (np.ndarray, jax.Array))):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}.")
    out = jnp.asarray(value, dtype=float)
    if out.ndim != 0:
        raise ValueError(f"`{name}` must be a scalar, got shape {out.shape}.")
    check_finite(name, value)
    return out


def _concrete(*values: Array) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def with_args(score: Callable, args) -> ScoreFn:
    """The score a Diffrax term evaluates: `score(t, x)`, or `score(t, x, args)` when the
    solve carries a condition in Diffrax's `args`."""
    return score if args is None else (lambda t, x: score(t, x, args))


class AbstractSDE(eqx.Module):
    r"""A forward SDE $\mathrm{d}x = f(t, x)\,\mathrm{d}t + g(t)\,\mathrm{d}w$ on $[0, T]$.

    The diffusion is a scalar function of time times the identity, which covers the
    VP, sub-VP and VE SDEs of Song et al. (2021) and keeps the reverse-time SDE's noise
    additive.

    A subclass provides:

    - `T`: the time horizon, an array field (an `eqx.AbstractVar` here);
    - `drift(t, x)`: $f(t, x)$ for ONE sample `x`, an array shaped like `x`;
    - `diffusion(t)`: the scalar $g(t)$;
    - `prior_sample(key, data_shape)` and `prior_log_prob(x)`: the reference
      distribution at $T$ that reverse-time sampling starts from;
    - `default_eps`: a property, the time sampling stops at by default (a Python float in
      $(0, T)$).

    Everything else (the Diffrax terms, `discretize`, the reverse drift) is derived. The
    samplers that follow a Diffrax solve ([`ReverseSDE`][scoresde.ReverseSDE],
    [`ProbabilityFlowODE`][scoresde.ProbabilityFlowODE] with Diffrax's solvers,
    [`Langevin`][scoresde.Langevin]) need nothing more; training objectives, time grids in
    the noise level, exact scores and the few-step solvers need the closed-form kernel of
    an [`AbstractLinearSDE`][scoresde.AbstractLinearSDE]. See
    [Extending scoresde](../extending.md#your-own-sde) for a worked example.

    From these the SDE declares its Diffrax terms:

    - forward: `MultiTerm(ODETerm(f), ControlTerm(g, brownian))`;
    - reverse: `MultiTerm(ODETerm(f - g² s), ControlTerm(g, brownian))`, integrated
      from $T$ down to `eps` with a negative step;
    - probability flow: `ODETerm(f - ½ g² s)`.

    The schedule constants (`T`, `beta_min`, `beta_max`, `sigma_min`, `sigma_max`) are array
    leaves, so changing one does not recompile, but they define the problem rather than
    parameterise a model: every method reads them through `jax.lax.stop_gradient`, so
    gradients through them are zero and `eqx.filter_grad` of a model holding an SDE returns
    zeros for them. (An optimiser with decoupled weight decay would still move them; filter
    SDEs out of the parameters, as `fit` does.) Subclasses read their array fields through
    `self._const(name)`.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{song2021scorebased,
          title={Score-Based Generative Modeling through Stochastic Differential Equations},
          author={Song, Yang and Sohl-Dickstein, Jascha and Kingma, Diederik P and
                  Kumar, Abhishek and Ermon, Stefano and Poole, Ben},
          booktitle={ICLR}, year={2021}
        }
        ```
    """

    T: eqx.AbstractVar[Array]

    def _const(self, name: str) -> Array:
        """The array field `name` with its gradient stopped: the one place the SDE's
        methods read a schedule constant, so none of them is ever trained by accident."""
        return lax.stop_gradient(getattr(self, name))

    @abc.abstractmethod
    def drift(self, t: ScalarLike, x: Data) -> Data:
        """The drift $f(t, x)$ of one sample `x`."""

    @abc.abstractmethod
    def diffusion(self, t: ScalarLike) -> Scalar:
        """The scalar diffusion coefficient $g(t)$."""

    @abc.abstractmethod
    def prior_sample(self, key: PRNGKeyArray, data_shape: tuple[int, ...]) -> Data:
        """One sample of the prior, the reference distribution at time $T$."""

    @abc.abstractmethod
    def prior_log_prob(self, x: Data) -> Scalar:
        """The prior's log-density at one sample `x`."""

    @property
    @abc.abstractmethod
    def default_eps(self) -> float:
        """The time at which reverse-time sampling stops unless a sampler says otherwise."""

    # -- Diffrax terms -----------------------------------------------------------------

    def _noise_term(self, brownian: dfx.AbstractBrownianPath) -> dfx.ControlTerm:
        def dispersion(t, y, args):
            del args
            # eval_shape, not ShapeDtypeStruct(y.shape, ...): inside shard_map the
            # structure carries the manual mesh, and lineax compares it with the control's.
            structure = jax.eval_shape(lambda: y)
            return self.diffusion(t).astype(y.dtype) * lx.IdentityLinearOperator(structure)

        return dfx.ControlTerm(dispersion, brownian)

    def forward_terms(self, brownian: dfx.AbstractBrownianPath) -> dfx.MultiTerm:
        r"""Diffrax terms of the forward SDE $\mathrm{d}x = f\,\mathrm{d}t + g\,\mathrm{d}w$."""
        drift = dfx.ODETerm(lambda t, y, args: self.drift(t, y))
        return dfx.MultiTerm(drift, self._noise_term(brownian))

    def reverse_drift(self, score: ScoreFn, t: ScalarLike, x: Data) -> Data:
        r"""$f(t, x) - g(t)^2 s(t, x)$: the drift of the reverse-time SDE in forward time."""
        g = self.diffusion(t)
        return self.drift(t, x) - (g**2).astype(x.dtype) * score(t, x)

    def probability_flow_drift(self, score: ScoreFn, t: ScalarLike, x: Data) -> Data:
        r"""$f(t, x) - \tfrac12 g(t)^2 s(t, x)$: the probability-flow ODE's vector field."""
        g = self.diffusion(t)
        return self.drift(t, x) - (0.5 * g**2).astype(x.dtype) * score(t, x)

    def reverse_terms(
        self, score: ScoreFn, brownian: dfx.AbstractBrownianPath, num_steps: int | None = None
    ) -> dfx.MultiTerm:
        r"""Diffrax terms of the reverse-time SDE (Anderson, 1982).

        $\mathrm{d}x = [f(t, x) - g(t)^2 \nabla_x \log p_t(x)]\,\mathrm{d}t +
        g(t)\,\mathrm{d}\bar w$, solved from $t_0 = T$ to $t_1 = \epsilon < T$. Diffrax
        integrates backwards in time when $t_1 < t_0$; the Brownian path lives on
        $[\epsilon, T]$. A conditional score `score(t, x, c)` takes its condition from
        `diffeqsolve(..., args=c)`; with `args=None` the score is called as `score(t, x)`.

        The drift is a `ReverseDriftTerm`, which exposes the SDE and the score to solvers
        that need them (the exponential integrators); `num_steps` is the number of fixed
        steps of the solve, if known.
        """
        from ._terms import ReverseDriftTerm

        drift = ReverseDriftTerm(self, score, num_steps)
        return dfx.MultiTerm(drift, self._noise_term(brownian))

    def probability_flow_term(self, score: ScoreFn, num_steps: int | None = None):
        r"""The probability-flow ODE $\dot x = f(t, x) - \tfrac12 g(t)^2 \nabla_x \log p_t(x)$,
        whose marginals equal the SDE's, as a `ProbabilityFlowTerm` (a Diffrax term that
        also exposes the SDE and the score); `num_steps`: the fixed steps of the solve, if
        known."""
        from ._terms import ProbabilityFlowTerm

        return ProbabilityFlowTerm(self, score, num_steps)

    def discretize(self, t: ScalarLike, dt: ScalarLike, x: Data) -> tuple[Data, Scalar]:
        r"""One forward step $x_{t} \approx x_{t - \Delta t} + F + G z$ ending at `t`.

        Returns `(F, G)`. This generic version is Euler–Maruyama, $F = f\,\Delta t$,
        $G = g\sqrt{\Delta t}$; linear SDEs override it with the exact transition. Used by
        the reverse-diffusion predictor.
        """
        return self.drift(t, x) * dt, self.diffusion(t) * jnp.sqrt(dt)


class AbstractLinearSDE(AbstractSDE):
    r"""An SDE with a Gaussian transition kernel
    $x_t \mid x_0 \sim \mathcal N(m(t)\,x_0,\; s(t)^2 I)$.

    A subclass provides, besides `T`, `drift`, `diffusion` and `default_eps` of
    [`AbstractSDE`][scoresde.AbstractSDE]:

    - `mean_coeff(t)`: $m(t)$;
    - `std(t)`: $s(t)$, consistent with the drift and diffusion
      ($\frac{\mathrm{d}}{\mathrm{d}t}s^2 = 2\frac{\dot m}{m} s^2 + g^2$ for a drift
      $f = \frac{\dot m}{m} x$);
    - `prior_std`: a property, the standard deviation of the Gaussian prior (the prior's
      sample and log-density are derived from it);
    - `t_from_sigma(sigma)`: the inverse of the noise-to-signal ratio
      $\sigma(t) = s(t)/m(t)$ (used to place time grids in $\sigma$ or log-SNR).
    """

    @abc.abstractmethod
    def mean_coeff(self, t: ScalarLike) -> Scalar:
        """$m(t)$: the marginal mean is $m(t)\\,x_0$."""

    @abc.abstractmethod
    def std(self, t: ScalarLike) -> Scalar:
        """$s(t)$: the marginal standard deviation, per coordinate."""

    @abc.abstractmethod
    def t_from_sigma(self, sigma: ScalarLike) -> Scalar:
        """The time at which the noise-to-signal ratio $s(t)/m(t)$ equals `sigma`."""

    @property
    @abc.abstractmethod
    def prior_std(self) -> Scalar:
        """Standard deviation of the Gaussian prior $\\mathcal N(0, \\sigma_T^2 I)$."""

    prior_fix: ClassVar[str] = "rescale the data to unit scale, or change the SDE's constants"
    """How to bring the marginal at $T$ to the prior, for `warn_prior_mismatch`'s message."""

    @property
    def level_eps(self) -> float | Scalar:
        """The time of the smallest noise level of a ladder of levels
        ([`AnnealedLangevin`][scoresde.AnnealedLangevin],
        [`MultiNoiseDSM`][scoresde.MultiNoiseDSM]) when none is given: `default_eps`,
        unless the SDE declares a smallest noise of its own (the VE SDE's `sigma_min`)."""
        return self.default_eps

    def prior_mismatch(self, mean_square: float) -> float:
        r"""An upper bound, in nats per dimension, on how far the marginal at $T$ is from
        the prior, for data with $\mathbb E[x_d^2] = $ `mean_square` (averaged over
        dimensions): the ELBO's prior term (Ho et al. 2020's $L_T$; Kingma et al. 2021's
        "prior loss"), which bounds $\mathrm{KL}(p_T \,\|\, \pi)$ by convexity,

        $$\frac1d\,\mathbb E_{x_0}\,\mathrm{KL}\big(\mathcal N(m x_0, s^2 I)\,\big\|\,
        \mathcal N(0, \sigma_\pi^2 I)\big) = \tfrac12\Big(\frac{s^2}{\sigma_\pi^2} - 1 -
        \log\frac{s^2}{\sigma_\pi^2}\Big) + \frac{m^2\,\mathbb E[x^2]}{2\sigma_\pi^2},$$

        with $m = m(T)$, $s = s(T)$. It is 0 only when the SDE forgets the data entirely
        and ends at exactly the prior's scale. It is also the most by which the prior
        misstates $\log p_T$ per dimension on average, so it bounds the error it adds to a
        log-likelihood through the probability-flow ODE. Computed in float64 from the
        SDE's constants; cheap."""
        T = self._const("T")
        m, s, p = (float(v) for v in (self.mean_coeff(T), self.std(T), self.prior_std))
        ratio = (s / p) ** 2
        noise = 0.5 * (ratio - 1 - math.log(ratio)) if ratio > 0 else math.inf
        return noise + 0.5 * m**2 * float(mean_square) / p**2

    def sigma(self, t: ScalarLike) -> Scalar:
        """The noise-to-signal ratio $\\sigma(t) = s(t)/m(t)$ (EDM's $\\sigma$)."""
        return self.std(t) / self.mean_coeff(t)

    def log_snr(self, t: ScalarLike) -> Scalar:
        r"""$\lambda(t) = \log(m(t)^2 / s(t)^2)$, decreasing in $t$."""
        return -2.0 * jnp.log(self.sigma(t))

    def marginal_sample(self, key: PRNGKeyArray, t: ScalarLike, x0: Data) -> Data:
        """One draw of $x_t$ given $x_0$, from the closed-form kernel, in `x0`'s dtype.

        The noise is drawn and combined in at least float32, then rounded once to `x0`'s
        dtype: bfloat16 data gets Gaussian noise with float32's tails, not bfloat16's 128
        values."""
        z = normal(key, x0.shape, jnp.promote_types(x0.dtype, jnp.float32))
        return (self.mean_coeff(t) * x0 + self.std(t) * z).astype(x0.dtype)

    def prior_sample(self, key: PRNGKeyArray, data_shape: tuple[int, ...]) -> Data:
        return self.prior_std * jr.normal(key, data_shape)

    def prior_log_prob(self, x: Data) -> Scalar:
        var = self.prior_std**2
        return -0.5 * (jnp.sum(x**2) / var + x.size * jnp.log(2 * jnp.pi * var))

    def discretize(self, t: ScalarLike, dt: ScalarLike, x: Data) -> tuple[Data, Scalar]:
        r"""The exact transition from $s = t - \Delta t$ to $t$:
        $x_t = r\,x_s + \sqrt{s(t)^2 - r^2 s(s)^2}\,z$ with $r = m(t)/m(s)$."""
        s = t - dt
        ratio = self.mean_coeff(t) / self.mean_coeff(s)
        var = self.std(t) ** 2 - ratio**2 * self.std(s) ** 2
        ratio, G = scalar_barrier(ratio, jnp.sqrt(jnp.maximum(var, 0.0)))
        return (ratio - 1) * x, G


def sdes_in(tree) -> list[AbstractSDE]:
    """Every SDE inside a pytree (a model, an objective), outermost first."""
    is_sde = lambda node: isinstance(node, AbstractSDE)  # noqa: E731
    return [leaf for leaf in jax.tree.leaves(tree, is_leaf=is_sde) if is_sde(leaf)]


def same_sde(a: AbstractSDE, b: AbstractSDE) -> bool:
    """Same class, and the same constants where both are concrete (float32 round-off
    allowed: a constant read back from a checkpoint may differ in the last bit)."""
    if type(a) is not type(b):
        return False
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, jax.Array) and isinstance(other, jax.Array):
            if isinstance(value, jax.core.Tracer) or isinstance(other, jax.core.Tracer):
                continue
            if not np.allclose(np.asarray(value), np.asarray(other), rtol=1e-6, atol=0):
                return False
    return True


def check_score_sde(sde: AbstractSDE, score, caller: str) -> None:
    """Raises if `score` holds an SDE (a parameterisation's, an exact score's, a guided
    score's) other than `sde`, the one `caller` runs: the score would be evaluated with
    one SDE's noise scale and integrated with another's."""
    for theirs in sdes_in(score):
        if not same_sde(theirs, sde):
            raise ValueError(
                f"`score` ({type(score).__name__}) is built on {describe(theirs)}, but {caller} "
                f"was given {describe(sde)}: pass the SDE the score was built and trained with."
            )


class PriorMismatchWarning(UserWarning):
    """The SDE's marginal at $T$ is far from its prior for the data's scale (see
    [`warn_prior_mismatch`][scoresde.warn_prior_mismatch]). Turn it into an error with
    `warnings.simplefilter("error", sd.PriorMismatchWarning)`.

    **Arguments:**

    - `message`: the one-line explanation, as for any `Warning`.
    """


PRIOR_MISMATCH_NATS = 0.5
"""The threshold of `prior_mismatch`, in nats per dimension. By Pinsker's inequality a KL
of 0.5 nats allows a total-variation distance of 0.5 per coordinate: half the prior's mass
misplaced, a mismatch that shows in samples and likelihoods. Schedules that are merely
imperfect stay below it: the tutorial's `VPSDE(0.001, 3)` on unit-scale data is at 0.12,
Song et al.'s VP and VE settings at 1e-4 or less."""


def warn_prior_mismatch(sde: AbstractSDE, mean_square: float) -> float | None:
    r"""Warns (a [`PriorMismatchWarning`][scoresde.PriorMismatchWarning], once per call
    site under Python's default filter) when a linear SDE does not carry data with
    $\mathbb E[x^2] = $ `mean_square` to its prior: when
    [`prior_mismatch`][scoresde.AbstractLinearSDE.prior_mismatch] exceeds 0.5 nats per
    dimension. Sampling then starts from the wrong distribution at $T$ and
    log-likelihoods are off by up to that much per dimension. `fit`, `log_prob` and the
    exact scores call it; call it yourself on other data. The warning points at the first
    caller outside the library. A non-linear SDE, or one with traced constants, is not
    checked.

    **Arguments:**

    - `sde`: the forward SDE.
    - `mean_square`: the data's mean square, `np.mean(data**2)`.

    **Returns:**

    The bound in nats per dimension, or `None` where it is not checked.
    """
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"`sde` must be an SDE such as sd.VPSDE(), got {type(sde).__name__}.")
    if not (is_real(mean_square) and math.isfinite(mean_square) and mean_square >= 0):
        raise ValueError(
            f"`mean_square` must be a finite number >= 0, the data's mean square "
            f"np.mean(data**2), got {mean_square!r}."
        )
    if not isinstance(sde, AbstractLinearSDE):
        return None
    if not _concrete(*(v for v in vars(sde).values() if isinstance(v, jax.Array))):
        return None
    bound = sde.prior_mismatch(mean_square)
    if bound <= PRIOR_MISMATCH_NATS:
        return bound
    T = float(sde.T)
    m, s, p = (float(v) for v in (sde.mean_coeff(T), sde.std(T), sde.prior_std))
    if 0.5 * m**2 * mean_square / p**2 >= bound / 2:
        cause = (
            f"at T it keeps m(T) = {m:.3g} of data whose root mean square is "
            f"{math.sqrt(mean_square):.3g}, against a prior std of {p:.3g}"
        )
    else:
        cause = f"its noise at T, s(T) = {s:.3g}, is far from the prior's std {p:.3g}"
    warnings.warn(
        f"{describe(sde)} does not reach its prior N(0, {p:.3g}^2 I) for this data: {cause}, "
        f"so KL(p_T || prior) may be up to {bound:.3g} nats per dimension (threshold "
        f"{PRIOR_MISMATCH_NATS}): samples start from the wrong distribution and "
        f"log-likelihoods are off by up to that much; {sde.prior_fix}.",
        PriorMismatchWarning,
        stacklevel=_outside_stacklevel(),
    )
    return bound


def _outside_stacklevel() -> int:
    """The `stacklevel` of `warnings.warn` (called by this function's caller) that names
    the first frame outside scoresde and the wrappers around its functions (beartype,
    jaxtyping, Equinox), so "once per call site" means once per line of the user's code
    however deep in the library the warning is raised."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    wrappers = tuple(os.sep + name + os.sep for name in ("jaxtyping", "equinox", "beartype"))
    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = frame.f_code.co_filename
        inside = name.startswith((package, "<@beartype")) or any(w in name for w in wrappers)
        if not inside:
            return level
        frame, level = frame.f_back, level + 1
    return level
