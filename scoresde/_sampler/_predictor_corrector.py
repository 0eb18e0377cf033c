import abc

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._checks import static_number
from .._custom_types import Array, Data, Float, PRNGKeyArray, Scalar
from .._numerics import normal, scalar_barrier
from .._sde import AbstractLinearSDE, AbstractSDE
from ._base import (
    AbstractSampler,
    check_denoise,
    check_eps,
    check_finite,
    check_num,
    initial_state,
    make_stats,
    nearest_steps,
    resolve_eps,
    scan_with_snapshots,
    ScoreFn,
    split2,
    Stats,
    tweedie_denoise,
)
from ._grid import AbstractTimeGrid, check_grid, UniformGrid


class AbstractPredictor(eqx.Module):
    """One step of a reverse-time SDE solver, from `t` down to `t_next`, for one sample:
    the predictor of [`PredictorCorrector`][scoresde.PredictorCorrector].

    A subclass provides `step(sde, score, t, t_next, x, key)`, returning the state at
    `t_next < t` from the state `x` at `t` (one sample, no batch axis), using `key` for
    its noise. It is called inside `lax.scan` and `vmap`: pure JAX, no Python control
    flow on array values. The sampler counts one score evaluation per predictor step.
    """

    @abc.abstractmethod
    def step(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        t: Scalar,
        t_next: Scalar,
        x: Data,
        key: PRNGKeyArray,
    ) -> Data:
        """The state at `t_next` from the state `x` at `t`."""


class AbstractCorrector(eqx.Module):
    """Score-based MCMC steps at a fixed time `t`, for one sample: the corrector of
    [`PredictorCorrector`][scoresde.PredictorCorrector].

    A subclass provides:

    - `num_steps`: a static int field, the number of MCMC steps per call (the sampler
      counts that many score evaluations per corrector call);
    - `step(sde, score, t, dt, x, snr, key)`: `num_steps` MCMC steps leaving
      $p_t$ invariant (approximately), from the state `x` at `t`; `dt > 0` is the length
      of the predictor step that follows, `snr` the sampler's signal-to-noise ratio.
      Pure JAX, as for [`AbstractPredictor`][scoresde.AbstractPredictor].
    """

    num_steps: eqx.AbstractVar[int]

    @abc.abstractmethod
    def step(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        t: Scalar,
        dt: Scalar,
        x: Data,
        snr: float,
        key: PRNGKeyArray,
    ) -> Data:
        """`num_steps` MCMC steps at time `t` from the state `x`."""


class EulerMaruyamaPredictor(AbstractPredictor):
    r"""$x \leftarrow x + [f - g^2 s]\,\Delta t + g\sqrt{|\Delta t|}\,z$ with $\Delta t < 0$."""

    def step(self, sde, score, t, t_next, x, key):
        dt = (t_next - t).astype(x.dtype)
        z = normal(key, x.shape, x.dtype)
        g = sde.diffusion(t).astype(x.dtype)
        return x + sde.reverse_drift(score, t, x) * dt + g * jnp.sqrt(-dt) * z


class ReverseDiffusionPredictor(AbstractPredictor):
    r"""Song et al.'s reverse diffusion: with the forward step $x_t = x_{t'} + F + Gz$
    ending at $t$ (the SDE's `discretize`), step back with
    $x_{t'} = x_t - F + G^2 s(t, x_t) + Gz$. For the VP SDE this is ancestral (DDPM)
    sampling; for VE it is SMLD's."""

    def step(self, sde, score, t, t_next, x, key):
        F, G = sde.discretize(t, t - t_next, x)
        G = G.astype(x.dtype)
        z = normal(key, x.shape, x.dtype)
        return x - F + G**2 * score(t, x) + G * z


class LangevinCorrector(AbstractCorrector):
    r"""Song et al.'s Langevin corrector: `num_steps` steps of
    $x \leftarrow x + \epsilon s(t, x) + \sqrt{2\epsilon}\,z$ at a fixed time $t$.

    Song et al. set $\epsilon = 2\alpha\,(r\,\|z\|/\|s\|)^2$ with the norms averaged over
    the batch, $r$ the signal-to-noise ratio `snr` and $\alpha = (m(t)/m(t-\Delta t))^2$
    ($1 - \beta_i$ for VP, 1 for VE). Here the norms take their values for noise of
    variance $s(t)^2$, $\|z\|^2 = d$ and $\|s\|^2 = d/s(t)^2$ (the Fisher information of
    $\mathcal N(0, s(t)^2 I)$, the largest any $p_t$ can have), so

    $$\epsilon = 2\alpha\,r^2\,s(t)^2 .$$

    The step then depends on $t$ only. Batch averaging would couple the samples; a
    per-sample ratio makes the step depend on $x$, and unadjusted Langevin with a
    position-dependent step samples the wrong distribution (on a 2-D mixture it shifted
    the mean by many standard errors, and blew up where $\|s\| \approx 0$). In high
    dimension the three agree up to the data's Fisher information. Needs a linear SDE.

    **Arguments:**

    - `num_steps`: Langevin steps per corrector call (default 1).
    """

    num_steps: int = static_number(default=1)

    def __check_init__(self):
        check_num("num_steps", self.num_steps)

    def step(self, sde, score, t, dt, x, snr, key):
        assert isinstance(sde, AbstractLinearSDE)
        alpha = (sde.mean_coeff(t) / sde.mean_coeff(t - dt)) ** 2
        step_size = scalar_barrier((2 * alpha * snr**2 * sde.std(t) ** 2).astype(x.dtype))
        for i in range(self.num_steps):
            z = normal(jr.fold_in(key, i), x.shape, x.dtype)
            x = x + step_size * score(t, x) + jnp.sqrt(2 * step_size) * z
        return x


class PredictorCorrector(AbstractSampler):
    r"""Song et al.'s predictor–corrector sampler on a time grid $T = t_0 > \dots > t_n =
    \epsilon$: at each $t_i$, the corrector's MCMC steps at $t_i$, then one predictor step
    to $t_{i+1}$.

    **Arguments:**

    - `predictor`: [`ReverseDiffusionPredictor`][scoresde.ReverseDiffusionPredictor]
      (default) or [`EulerMaruyamaPredictor`][scoresde.EulerMaruyamaPredictor].
    - `corrector`: [`LangevinCorrector`][scoresde.LangevinCorrector] (default, one step), or
      `None` for predictor only.
    - `snr`: the corrector's signal-to-noise ratio $r$ (0.16 is Song et al.'s choice for
      VE on CIFAR-10).
    - `num_steps`: predictor steps $n$ (default 1000).
    - `grid`, `eps`, `denoise`: as for [`ReverseSDE`][scoresde.ReverseSDE]. Song et al.
      finish with the predictor's noise-free mean; `denoise=True` does Tweedie instead.
    """

    predictor: AbstractPredictor = ReverseDiffusionPredictor()
    corrector: AbstractCorrector | None = LangevinCorrector()
    snr: float = static_number(default=0.16)
    num_steps: int = static_number(default=1000)
    grid: AbstractTimeGrid = UniformGrid()
    eps: float | None = static_number(default=None)
    denoise: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        check_num("num_steps", self.num_steps)
        check_finite("snr", self.snr)
        if not self.snr > 0:
            raise ValueError(f"`snr` must be > 0, got {self.snr}.")
        if not isinstance(self.predictor, AbstractPredictor):
            raise TypeError(
                f"`predictor` must be an AbstractPredictor, got {type(self.predictor).__name__}."
            )
        if self.corrector is not None and not isinstance(self.corrector, AbstractCorrector):
            name = type(self.corrector).__name__
            raise TypeError(f"`corrector` must be an AbstractCorrector or None, got {name}.")

    def check(self, sde: AbstractSDE) -> None:
        check_eps(sde, self.eps)
        check_denoise(sde, self.denoise)
        check_grid(self.grid, sde, self.num_steps, resolve_eps(sde, self.eps))
        if isinstance(self.corrector, LangevinCorrector) and not isinstance(sde, AbstractLinearSDE):
            raise TypeError("LangevinCorrector sizes its steps by s(t): it needs a linear SDE.")

    def clock(self, sde: AbstractSDE) -> Float[Array, " n+1"]:
        r"""The grid times, from $T$ down to $\epsilon$."""
        return self.grid.times(sde, self.num_steps, resolve_eps(sde, self.eps))

    def sample_one(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        key: PRNGKeyArray,
        save_ts: Float[Array, " k"] | None,
        initial: Data | None = None,
    ) -> tuple[Data, Float[Array, "k *data"] | None, Stats]:
        key_prior, key_steps = split2(key)
        x0 = initial_state(sde, key_prior, data_shape, initial=initial)
        ts = self.clock(sde)

        def step(i, x):
            key_c, key_p = jr.split(jr.fold_in(key_steps, i))
            t, t_next = ts[i], ts[i + 1]
            if self.corrector is not None:
                x = self.corrector.step(sde, score, t, t - t_next, x, self.snr, key_c)
            return self.predictor.step(sde, score, t, t_next, x, key_p)

        save_steps = None if save_ts is None else nearest_steps(ts, save_ts)
        x, traj = scan_with_snapshots(step, x0, self.num_steps, save_steps)
        per_step = 1 + (0 if self.corrector is None else self.corrector.num_steps)
        evals = self.num_steps * per_step
        if self.denoise:
            x = tweedie_denoise(sde, score, ts[-1], x)
            evals += 1
        return x, traj, make_stats(self.num_steps, 0, evals)
