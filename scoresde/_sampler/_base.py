import abc
from collections.abc import Callable

import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import (
    check_eps as _check_eps,
    check_finite as check_finite,
    check_num as check_num,
    check_positive as check_positive,
)
from .._custom_types import Array, Data, Float, Int, PRNGKeyArray, Scalar
from .._sde import AbstractLinearSDE, AbstractSDE, ScoreFn


Stats = dict[str, Int[Array, ""]]


class AbstractSampler(eqx.Module):
    """A way of drawing ONE sample from a score; [`sample`][scoresde.sample] vmaps it.

    A subclass provides:

    - `clock(sde)`: the sampler's clock at the initial state and after each of its steps,
      shape `(num_steps + 1,)`: the diffusion time (from $T$ down to $\\epsilon$) for
      samplers that follow it, the step count for the Langevin samplers, `None` for
      adaptive steps (such a sampler also overrides `clock_range(sde)`, the clock's
      start and end). Snapshots (`saveat`) are placed and reported on this clock.
    - `sample_one(sde, score, data_shape, key, save_ts, initial=None)`: one sample, its
      snapshots at the clock values `save_ts` (already snapped to the clock), and its
      statistics: a dict of int32 scalars `num_steps`, `num_rejected_steps` and
      `num_score_evals`; `initial`, when given, is the initial state to use instead of a
      draw.
    - optionally `check(sde)`: raise a clear error if the sampler cannot run on `sde`;
      checks that need no SDE belong in `__check_init__`, so they fail at construction.

    A conditional score reaches `sample_one` with its condition already bound: a sampler
    always sees `score(t, x)` of one sample. `sample_one` runs under `vmap` (and `jit`):
    pure JAX, static step counts as `eqx.field(static=True)`. See
    [Extending scoresde](../extending.md#your-own-sampler) for a worked example.
    """

    def check(self, sde: AbstractSDE) -> None:
        """Raises a clear `ValueError`/`TypeError` if this sampler cannot run on `sde`."""

    @abc.abstractmethod
    def clock(self, sde: AbstractSDE) -> Float[Array, " n+1"] | None:
        """The clock at the initial state and after each step, or `None` (adaptive)."""

    def clock_range(self, sde: AbstractSDE) -> tuple[float, float]:
        """`(start, end)` of the clock: where the run begins and ends."""
        clock = self.clock(sde)
        assert clock is not None, "an adaptive sampler overrides clock_range"
        return float(clock[0]), float(clock[-1])

    def save_times(self, sde: AbstractSDE, num: int) -> Float[Array, " num"]:
        """`num` snapshot times spread evenly over the run, first to last: the clock after
        evenly spaced step counts (evenly spaced clock values for adaptive steps)."""
        clock = self.clock(sde)
        if clock is None:
            start, end = self.clock_range(sde)
            return jnp.linspace(start, end, num)
        if num > clock.shape[0]:
            raise ValueError(
                f"`saveat` asks for {num} snapshots, but {type(self).__name__} has only "
                f"{clock.shape[0]} states to show (the initial one and {clock.shape[0] - 1} "
                f"steps); ask for at most {clock.shape[0]}, or pass the clock values you want."
            )
        return clock[evenly_spaced_steps(clock.shape[0] - 1, num)]

    def snap_save_times(self, sde: AbstractSDE, ts: Float[Array, " k"]) -> Float[Array, " k"]:
        """Asked snapshot times checked against the run and moved to the nearest clock
        value a fixed-step run reaches (unchanged for adaptive steps)."""
        start, end = self.clock_range(sde)
        lo, hi = min(start, end), max(start, end)
        values = np.asarray(ts, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"`saveat` times must be finite clock values of the run of "
                f"{type(self).__name__}, from {start:g} to {end:g}; got {values.tolist()}."
            )
        slack = 1e-6 * max(abs(lo), abs(hi), 1.0)
        if values.min() < lo - slack or values.max() > hi + slack:
            raise ValueError(
                f"`saveat` asks for snapshots at {values.min():g}..{values.max():g}, outside the "
                f"run of {type(self).__name__}, which goes from {start:g} to {end:g}; ask for "
                "times inside it."
            )
        if np.any(np.diff(values) * np.sign(end - start) < 0):
            raise ValueError(
                f"`saveat` times must follow the run of {type(self).__name__}, from {start:g} "
                f"towards {end:g}; sort them in that order."
            )
        clock = self.clock(sde)
        if clock is None:
            return jnp.clip(ts, lo, hi)
        return clock[nearest_steps(clock, ts)]

    @abc.abstractmethod
    def sample_one(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        key: PRNGKeyArray,
        save_ts: Float[Array, " k"] | None,
        initial: Data | None = None,
    ) -> tuple[Data, Float[Array, "k *data"] | None, Stats]:
        """Returns the sample, its snapshots at `save_ts` (or `None`), and statistics
        (`num_steps`, `num_rejected_steps`, `num_score_evals`). `initial`, when given,
        replaces the draw of the initial state (a prior draw at $T$, or the Langevin
        samplers' start)."""


class AbstractConditioningSampler(AbstractSampler):
    """A sampler that uses each sample's condition itself (an observation $y$, say) with
    an UNCONDITIONAL score, instead of a conditional score with the condition bound: a
    particle sampler weighing particles by a likelihood, or inpainting by replacement.
    [`sample`][scoresde.sample] hands it one sample's condition; it needs `condition=`.

    A subclass provides `sample_given` (the `sample_one` of one condition) and
    `check_condition` (raise at the call if one condition cannot be used).
    """

    def check_condition(self, data_shape: tuple[int, ...], condition) -> None:
        """Raises if one condition (shapes and dtypes) cannot be used on `data_shape`."""

    @abc.abstractmethod
    def sample_given(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        key: PRNGKeyArray,
        save_ts: Float[Array, " k"] | None,
        condition,
        initial: Data | None = None,
    ) -> tuple[Data, Float[Array, "k *data"] | None, Stats]:
        """As `sample_one`, for one sample's `condition`."""

    def sample_one(self, sde, score, data_shape, key, save_ts, initial=None):
        raise TypeError(f"{type(self).__name__} needs `condition=` (one per sample).")


def nearest_steps(clock: Float[Array, " n+1"], ts: Float[Array, " k"]) -> Int[Array, " k"]:
    """The step count whose clock value is nearest to each of `ts`."""
    return jnp.argmin(jnp.abs(clock[None, :] - ts[:, None]), axis=1)


def resolve_eps(sde: AbstractSDE, eps: float | None) -> float:
    """The end time a sampler stops at: its own `eps`, or the SDE's default."""
    return sde.default_eps if eps is None else eps


def check_eps(sde: AbstractSDE, eps: float | None) -> float:
    """Checks, outside jit, that the end time lies in (0, T)."""
    return _check_eps(sde, eps, "it is the time reverse-time sampling stops at")


def initial_state(
    sde: AbstractSDE,
    key: PRNGKeyArray,
    data_shape: tuple[int, ...],
    init_uniform: tuple[float, float] | None = None,
    initial: Data | None = None,
) -> Data:
    """`initial` if given, else a draw of the SDE's prior, or uniform on a box when
    `init_uniform = (low, high)`."""
    if initial is not None:
        return initial
    if init_uniform is None:
        return sde.prior_sample(key, data_shape)
    low, high = init_uniform
    return jr.uniform(key, data_shape, minval=low, maxval=high)


def check_init_uniform(init_uniform: tuple[float, float] | None) -> None:
    if init_uniform is not None:
        check_finite("init_uniform", init_uniform)
    if init_uniform is not None and not (
        len(init_uniform) == 2 and float(init_uniform[0]) < float(init_uniform[1])
    ):
        raise ValueError(f"`init_uniform` must be (low, high) with low < high, got {init_uniform}.")


def tweedie_denoise(sde: AbstractSDE, score: ScoreFn, t: Scalar, x: Data) -> Data:
    r"""Tweedie's formula: $\mathbb E[x_0 \mid x_t] = (x_t + s(t)^2 \nabla\log p_t(x_t))/m(t)$."""
    if not isinstance(sde, AbstractLinearSDE):
        raise TypeError("`denoise=True` needs a linear SDE (one with `mean_coeff` and `std`).")
    return (x + (sde.std(t) ** 2).astype(x.dtype) * score(t, x)) / sde.mean_coeff(t).astype(x.dtype)


def check_denoise(sde: AbstractSDE, denoise: bool) -> None:
    if denoise and not isinstance(sde, AbstractLinearSDE):
        raise TypeError("`denoise=True` needs a linear SDE (one with `mean_coeff` and `std`).")


def evenly_spaced_steps(num_steps: int, num: int) -> Int[Array, " num"]:
    """`num` step indices from 0 (the initial state) to `num_steps` (the final one)."""
    return jnp.round(jnp.linspace(0, num_steps, num)).astype(jnp.int32)


def scan_with_snapshots(
    step: Callable[[Int[Array, ""], Data], Data],
    x0: Data,
    num_steps: int,
    save_steps: Int[Array, " k"] | None,
) -> tuple[Data, Float[Array, "k *data"] | None]:
    """Runs `x = step(i, x)` for `i = 0 .. num_steps - 1` as one `lax.scan`.

    Snapshots are taken after `save_steps` steps (0 is the initial state); each step writes
    the state into its snapshot slot, or into a spare slot that is dropped, so the cost is
    one copy of one sample per step and nothing when no snapshots are asked for.
    """
    if save_steps is None:
        x, _ = lax.scan(lambda x, i: (step(i, x), None), x0, jnp.arange(num_steps))
        return x, None
    k = save_steps.shape[0]
    traj = jnp.zeros((k + 1,) + x0.shape, x0.dtype)

    def write(traj, done, x):
        hits = save_steps == done
        slot = jnp.where(hits.any(), jnp.argmax(hits), k)
        return lax.dynamic_update_index_in_dim(traj, x, slot, 0)

    def body(carry, i):
        x, traj = carry
        x = step(i, x)
        return (x, write(traj, i + 1, x)), None

    traj = write(traj, 0, x0)
    (x, traj), _ = lax.scan(body, (x0, traj), jnp.arange(num_steps))
    # A step index listed twice fills only its first slot; copy it to the others.
    first = jnp.argmax(save_steps[:, None] == save_steps[None, :], axis=1)
    return x, traj[:k][first]


def make_stats(num_steps, num_rejected_steps, num_score_evals) -> Stats:
    """The statistics every sampler reports, as int32 scalars."""
    return {
        "num_steps": jnp.asarray(num_steps, jnp.int32),
        "num_rejected_steps": jnp.asarray(num_rejected_steps, jnp.int32),
        "num_score_evals": jnp.asarray(num_score_evals, jnp.int32),
    }


def split2(key: PRNGKeyArray) -> tuple[PRNGKeyArray, PRNGKeyArray]:
    a, b = jr.split(key)
    return a, b
