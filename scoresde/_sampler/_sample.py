import dataclasses
from collections.abc import Callable
from typing import Any, Literal, overload

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (
    check_callable,
    check_finite_rows,
    check_num,
    check_score,
    runtime_errors,
)
from .._condition import bind, one_condition, prepare_condition
from .._custom_types import Array, Batch, Float, Int, PRNGKeyArray
from .._sde import AbstractSDE
from .._sde._base import check_score_sde
from .._sharding import Devices, fold_in_keys, map_batch, resolve_mesh
from .._typecheck import as_shape, typechecked
from ._base import AbstractConditioningSampler, AbstractSampler


class SampleResult(eqx.Module):
    """What [`sample`][scoresde.sample] returns with `return_info=True`.

    - `samples`: shape `(n, *data)`.
    - `ts`: shape `(k,)`, when each snapshot was taken: diffusion time for the SDE, ODE and
      predictor–corrector samplers, step count for the Langevin samplers. Empty if no
      snapshots were asked for.
    - `trajectory`: shape `(n, k, *data)`, the samples at `ts`.
    - `stats`: per-sample counts, each shape `(n,)`: `num_steps` (accepted steps),
      `num_rejected_steps`, `num_score_evals` (-1 where the solver's count is unknown);
      particle samplers add their own (effective sample sizes, log-normaliser estimates).
    """

    samples: Batch
    ts: Float[Array, " k"]
    trajectory: Float[Array, "n k *data"]
    stats: dict[str, Int[Array, " n"] | Float[Array, " n"]]


def _check_initial(initial, shape: tuple[int, ...]):
    """`initial` as a float array of exactly `shape` with finite rows, or `None`."""
    if initial is None:
        return None
    if tuple(np.shape(initial)) != tuple(shape):
        raise ValueError(
            f"`initial` must have the shape of the samples, `shape` = {tuple(shape)} (one "
            f"initial state per sample), got {tuple(np.shape(initial))}."
        )
    check_finite_rows("initial", initial, "every initial state must be finite")
    initial = jnp.asarray(initial)
    return initial if jnp.issubdtype(initial.dtype, jnp.floating) else initial.astype(float)


def _resolve_saveat(sampler, sde, saveat) -> Array | None:
    """The snapshot times on the sampler's clock, snapped to the steps it takes."""
    if saveat is None:
        return None
    if isinstance(saveat, (int, np.integer)) and not isinstance(saveat, bool):
        if saveat < 1:
            raise ValueError(f"`saveat` must be >= 1 snapshots, got {saveat}.")
        return sampler.save_times(sde, int(saveat))
    ts = jnp.asarray(saveat, dtype=float)
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise ValueError(f"`saveat` must be an int or a 1-D array of times, got shape {ts.shape}.")
    return sampler.snap_save_times(sde, ts)


@eqx.filter_jit
@eqx.debug.assert_max_traces(max_traces=None)  # counts traces, so tests can check retracing
def _sample_jit(
    sde, score, sampler, data_shape, key, num, save_ts, mesh, chunk_size, condition, initial
):
    consumes = isinstance(sampler, AbstractConditioningSampler)
    # Runs only when tracing: a cached call pays nothing for the check.
    check_score(
        score,
        data_shape,
        "the data part of `shape`",
        t=sde.T,
        condition=None if consumes else one_condition(condition),
    )
    keys = fold_in_keys(key, num, mesh)

    def one(sde, score, sampler, k, c, x0, save_ts):
        # `initial` is passed only when given, so samplers written before it keep working.
        extra = {} if x0 is None else {"initial": x0}
        if consumes:
            return sampler.sample_given(sde, score, data_shape, k, save_ts, c, **extra)
        return sampler.sample_one(sde, bind(score, c), data_shape, k, save_ts, **extra)

    def block(batch, sde, score, sampler, save_ts):
        ks, cs, x0s = batch
        x, traj, stats = jax.vmap(lambda k, c, x0: one(sde, score, sampler, k, c, x0, save_ts))(
            ks, cs, x0s
        )
        # Checked per block, inside the device's own program, so the result stays sharded.
        x = eqx.error_if(
            x,
            ~jnp.all(jnp.isfinite(x)),
            "sample(): a sample is NaN or inf. The score returned a non-finite value (or was "
            "given a class label outside its classes), or the sampler diverged (step size too "
            "large for Langevin, too few steps near eps).",
        )
        return x, traj, stats

    args = (sde, score, sampler, save_ts)
    return map_batch(
        block, (keys, condition, initial), mesh=mesh, chunk_size=chunk_size, replicated_args=args
    )


def _without_sde(sampler: AbstractSampler) -> tuple[AbstractSDE, AbstractSampler]:
    """For `sde=None`: Langevin runs on a stand-in SDE whose prior is N(0, I), at `t = 0`
    unless the sampler names one; any other sampler needs the real SDE."""
    from .._sde import VPSDE
    from ._langevin import Langevin

    if not isinstance(sampler, Langevin):
        raise TypeError(
            "`sde=None` works only with Langevin (a time-free score); "
            f"{type(sampler).__name__} runs the forward SDE backwards: pass it "
            "(e.g. sd.VPSDE())."
        )
    if sampler.t is None:
        sampler = dataclasses.replace(sampler, t=0.0)
    return VPSDE(), sampler


@overload
def sample(
    sde: AbstractSDE | None,
    score: Callable,
    sampler: AbstractSampler,
    shape: tuple[int, ...],
    *,
    key: PRNGKeyArray,
    saveat: int | Float[Array, " k"] | None = None,
    return_info: Literal[False] = False,
    devices: Devices = None,
    chunk_size: int | None = None,
    condition: Any = None,
    initial: Float[Array, "n *data"] | Float[np.ndarray, "n *data"] | None = None,
) -> Batch: ...


@overload
def sample(
    sde: AbstractSDE | None,
    score: Callable,
    sampler: AbstractSampler,
    shape: tuple[int, ...],
    *,
    key: PRNGKeyArray,
    saveat: int | Float[Array, " k"] | None = None,
    return_info: Literal[True],
    devices: Devices = None,
    chunk_size: int | None = None,
    condition: Any = None,
    initial: Float[Array, "n *data"] | Float[np.ndarray, "n *data"] | None = None,
) -> SampleResult: ...


@typechecked(normalise={"shape": as_shape})
def sample(
    sde: AbstractSDE | None,
    score: Callable,
    sampler: AbstractSampler,
    shape: tuple[int, ...],
    *,
    key: PRNGKeyArray,
    saveat: int | Float[Array, " k"] | Float[np.ndarray, " k"] | None = None,
    return_info: bool = False,
    devices: Devices = None,
    chunk_size: int | None = None,
    condition: Any = None,
    initial: Float[Array, "n *data"] | Float[np.ndarray, "n *data"] | None = None,
) -> Batch | SampleResult:
    r"""Draws samples by running `sampler` with `score` for the forward SDE `sde`.

    Sample $i$ is drawn from `jax.random.fold_in(key, i)`: the same key gives the same
    samples, and the first 10 of 1000 samples equal the 10 drawn with `shape=(10, ...)`
    (fixed-step samplers: up to a few float32 ulps, as XLA may vectorise a batch of 10
    differently from one of 1000; adaptive ones only up to floating-point noise, since an
    accept/reject decision can flip).
    The whole call is one jitted function, compiled once per configuration.

    **Arguments:**

    - `sde`: the forward SDE ([`VPSDE`][scoresde.VPSDE], [`SubVPSDE`][scoresde.SubVPSDE],
      [`VESDE`][scoresde.VESDE], ...). `None` for [`Langevin`][scoresde.Langevin] with a
      time-free score (Kasim's tutorial): the chain then starts from $\mathcal N(0, I)$
      (or `init_uniform`) and calls the score at `t` (default 0).
    - `score`: a callable `score(t, x)` on ONE sample `x` (no batch axis) returning an
      array shaped like `x`: an exact score, a trained network, a lambda. With
      `condition=`, a conditional score `score(t, x, c)` of one sample and ITS condition.
    - `sampler`: [`ReverseSDE`][scoresde.ReverseSDE],
      [`ProbabilityFlowODE`][scoresde.ProbabilityFlowODE], [`Langevin`][scoresde.Langevin],
      [`AnnealedLangevin`][scoresde.AnnealedLangevin],
      [`PredictorCorrector`][scoresde.PredictorCorrector],
      [`EDMSampler`][scoresde.EDMSampler]; few-step solvers ([`DDIM`][scoresde.DDIM],
      [`DPMSolverPP`][scoresde.DPMSolverPP], [`UniPC`][scoresde.UniPC]) go inside
      `ProbabilityFlowODE`/`ReverseSDE`.
    - `shape`: `(num_samples, *data_shape)`.
    - `key`: a JAX PRNG key.
    - `saveat`: trajectory snapshots on the sampler's clock (diffusion time for the
      SDE, ODE and predictor–corrector samplers; step count for the Langevin samplers): an
      int `k` for `k` snapshots at evenly spaced step counts from the initial state to the
      end of the run, or an array of clock values inside the run. Fixed-step samplers snap
      each asked time to the nearest step, and `SampleResult.ts` reports the snapped times;
      times outside the run raise.
    - `return_info`: return a [`SampleResult`][scoresde.SampleResult] with the snapshots
      and statistics instead of the bare array.
    - `devices`: where to run, data-parallel over the sample axis: `None` (default) for
      every device when `num_samples` divides evenly over them (else one device, with a
      warning), a list of devices, or a 1-D `jax.sharding.Mesh`. The result is sharded
      along its first axis.
    - `chunk_size`: run each device's share in blocks of this many samples, one after
      another. With a fixed `chunk_size` every device runs the same compiled block, so
      sample $i$ is bitwise the same on 1, 2 or 4 devices (and for any batch that is a
      multiple of it); it also bounds memory. Default: one block per device (fastest).
    - `condition`: for a conditional score, one condition per sample: any pytree whose
      leaves have a leading axis of `num_samples` (class labels `(n,)`, feature vectors
      `(n, m)`, observations). Sample $i$ uses `score(t, x, condition[i])` and depends only
      on the key, $i$ and its own condition; new condition values do not recompile. To
      share one condition, broadcast it. Class labels are checked against the score's
      classes (the null label included) before any work.
    - `initial`: the initial states, shape `shape`, instead of draws: the states at $T$
      for the samplers that run from $T$ (a latent from [`encode`][scoresde.encode]
      decodes back to its data through `ProbabilityFlowODE`), the chains' starts for the
      Langevin samplers. Sample $i$ starts from `initial[i]`; it must be finite.

    **Returns:**

    An array of exactly `shape`, or a `SampleResult` if `return_info=True`.
    """
    # `shape` was validated item by item, and made Python ints, by `typechecked`.
    if not isinstance(sampler, AbstractSampler):
        raise TypeError(f"`sampler` must be an AbstractSampler, got {type(sampler).__name__}.")
    if sde is None:
        sde, sampler = _without_sde(sampler)
    else:
        check_score_sde(sde, score, "sample()")
    sampler.check(sde)
    check_callable(score)
    if isinstance(sampler, AbstractConditioningSampler):
        if condition is None:
            raise ValueError(
                f"{type(sampler).__name__} needs `condition=`: one observation per sample "
                "(a leading axis of num_samples)."
            )
        condition = prepare_condition(None, condition, shape[0], "`num_samples`")
        sampler.check_condition(shape[1:], one_condition(condition))
    else:
        condition = prepare_condition(score, condition, shape[0], "`num_samples`")
    initial = _check_initial(initial, shape)
    save_ts = _resolve_saveat(sampler, sde, saveat)
    if chunk_size is not None:
        check_num("chunk_size", chunk_size)
    mesh = resolve_mesh(devices, shape[0], "The number of samples")
    with runtime_errors():
        x, traj, stats = jax.block_until_ready(
            _sample_jit(
                sde,
                score,
                sampler,
                shape[1:],
                key,
                shape[0],
                save_ts,
                mesh,
                chunk_size,
                condition,
                initial,
            )
        )
    if not return_info:
        return x
    if traj is None:
        save_ts = jnp.zeros((0,))
        traj = jnp.zeros((shape[0], 0) + shape[1:], x.dtype)
    return SampleResult(samples=x, ts=save_ts, trajectory=traj, stats=stats)
