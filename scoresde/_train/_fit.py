"""`fit`: minibatch training of a score model on an in-memory array."""

import dataclasses
import json
import os
import pathlib
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from .._checks import check_finite_rows, check_nonempty, check_num, check_score
from .._condition import (
    check_labels,
    check_null_label,
    one_condition,
    prepare_condition,
    real_number,
)
from .._custom_types import Array, Float, FloatArrayLike, Int, PRNGKeyArray
from .._objective import AbstractObjective
from .._sde import AbstractSDE, warn_prior_mismatch
from .._sde._base import sdes_in
from .._sharding import batch_sharding, Devices, global_data, replicated, resolve_mesh
from .._typecheck import typechecked
from ._checkpoint import check_writable, CheckpointError, load_checkpoint, write
from ._ema import ema_update


class TrainState(eqx.Module):
    """Everything a run needs to continue exactly: the model (last iterate), its EMA, the
    optimiser state, the number of steps taken and the run's key (raw `uint32` data)."""

    model: eqx.Module
    ema_model: eqx.Module
    opt_state: optax.OptState
    step: Int[Array, ""]
    key: Array


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What [`fit`][scoresde.fit] returns.

    - `model`: the model to sample with: the EMA weights (the last iterate if
      `ema_rate=None`).
    - `raw_model`: the last iterate.
    - `losses`: the training loss of every step, from step 0 (a resumed run includes the
      steps before the checkpoint).
    - `state`: the full [`TrainState`][scoresde.TrainState].
    """

    model: eqx.Module
    raw_model: eqx.Module
    losses: np.ndarray
    state: TrainState


def trainable(model) -> object:
    """The filter spec of what `fit` trains: every inexact array leaf outside an SDE. An
    SDE inside a model (a parameterisation's `sde`) defines the problem and stays fixed."""
    return jax.tree.map(
        lambda leaf: eqx.is_inexact_array(leaf) and not isinstance(leaf, AbstractSDE),
        model,
        is_leaf=lambda node: isinstance(node, AbstractSDE),
    )


def init_state(model, optimizer: optax.GradientTransformation, key: PRNGKeyArray) -> TrainState:
    """The state of a run before its first step; also the template a checkpoint of such a
    run loads into."""
    params = eqx.filter(model, trainable(model))
    return TrainState(model, model, optimizer.init(params), jnp.asarray(0), _raw_key(key))


def _raw_key(key: PRNGKeyArray) -> Array:
    key = jnp.asarray(key)
    return jr.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def _check_data(data: FloatArrayLike, batch_size: int) -> Float[Array, "n *data"]:
    shape = np.shape(data)
    if len(shape) < 2:
        raise ValueError(
            f"`data` must have shape (n, *data_shape) with a leading batch axis, got {shape}."
        )
    array = np.asarray(data)
    check_nonempty("data", array, "training")
    check_finite_rows("data", array, "remove or impute them before training")
    check_num("batch_size", batch_size)
    if batch_size > shape[0]:
        raise ValueError(
            f"`batch_size` ({batch_size}) exceeds the number of data points ({shape[0]}); "
            "use a batch_size <= len(data)."
        )
    return jnp.asarray(array, dtype=float)


def _check_conditioning(model, condition, dropout: float, null_condition, num: int):
    """The condition (leading axis `num`) and the null condition (one row's structure), as
    JAX arrays, checked at the call."""
    dropout = real_number("condition_dropout", dropout)
    if not 0 <= dropout < 1:
        raise ValueError(f"`condition_dropout` must lie in [0, 1), got {dropout!r}.")
    if condition is None:
        if dropout > 0 or null_condition is not None:
            raise ValueError(
                "`condition_dropout` and `null_condition` need `condition=` (the training "
                "data's conditions, one per data point)."
            )
        return None, None
    condition = prepare_condition(model, condition, num, "the number of data points")
    if dropout > 0 and null_condition is None:
        raise ValueError(
            "`condition_dropout` needs `null_condition`: the condition that stands for 'no "
            "condition' (for a model with num_classes=k, the null label k)."
        )
    if null_condition is None:
        return condition, None
    null = jax.tree.map(jnp.asarray, null_condition)
    row = one_condition(condition)
    same = jax.tree.structure(null) == jax.tree.structure(row) and all(
        n.shape == r.shape for n, r in zip(jax.tree.leaves(null), jax.tree.leaves(row), strict=True)
    )
    if not same:
        raise ValueError(
            "`null_condition` must look like ONE row of `condition` (shapes "
            f"{jax.tree.map(lambda r: r.shape, row)}), got "
            f"{jax.tree.map(lambda n: n.shape, null)}."
        )
    check_labels(model, jax.tree.map(lambda n: n[None], null))
    check_null_label(model, null)
    null = jax.tree.map(lambda n, r: n.astype(r.dtype), null, row)
    return condition, null


def _drop_conditions(condition, null, rate: float, key: PRNGKeyArray):
    """Each row's condition replaced by `null` with probability `rate`."""
    n = jax.tree.leaves(condition)[0].shape[0]
    drop = jr.bernoulli(key, rate, (n,))
    return jax.tree.map(
        lambda c, z: jnp.where(drop.reshape((n,) + (1,) * (c.ndim - 1)), z, c), condition, null
    )


@eqx.filter_jit
def _train_chunk(
    state: TrainState,
    objective,
    optimizer,
    data,
    condition,
    null,
    dropout: float,
    num: int,
    batch_size: int,
    rate,
    mesh,
):
    spec = trainable(state.model)
    params, static = eqx.partition(state.model, spec)
    ema, _ = eqx.partition(state.ema_model, spec)
    n = data.shape[0]
    batches_per_epoch = n // batch_size
    key_perm, key_loss = jr.fold_in(state.key, 0), jr.fold_in(state.key, 1)
    key_drop = jr.fold_in(state.key, 2)
    permutation = lambda step: jr.permutation(jr.fold_in(key_perm, step // batches_per_epoch), n)

    def loss_fn(p, batch, key, cond):
        return objective(eqx.combine(p, static), batch, key, cond)

    def one_step(carry, _):
        params, ema, opt_state, step, perm = carry
        position = step % batches_per_epoch
        perm = lax.cond(position == 0, lambda: permutation(step), lambda: perm)
        rows = lax.dynamic_slice_in_dim(perm, position * batch_size, batch_size)
        batch, cond = data[rows], jax.tree.map(lambda c: c[rows], condition)
        if dropout > 0:
            cond = _drop_conditions(cond, null, dropout, jr.fold_in(key_drop, step))
        if mesh is not None:  # split the batch over devices; XLA all-reduces the gradients
            batch, cond = lax.with_sharding_constraint((batch, cond), batch_sharding(mesh))
        loss, grads = eqx.filter_value_and_grad(loss_fn)(
            params, batch, jr.fold_in(key_loss, step), cond
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        ema = params if rate is None else ema_update(ema, params, rate, step)
        return (params, ema, opt_state, step + 1, perm), loss

    init = (params, ema, state.opt_state, state.step, permutation(state.step))
    if num == 1:
        # No loop of one: XLA:CPU computes convolutions in a loop body far more slowly
        # (see `fit`'s `steps_per_dispatch`).
        (params, ema, opt_state, step, _), loss = one_step(init, None)
        losses = loss[None]
    else:
        (params, ema, opt_state, step, _), losses = lax.scan(one_step, init, length=num)
    new = TrainState(
        eqx.combine(params, static), eqx.combine(ema, static), opt_state, step, state.key
    )
    return new, losses


def _default_steps_per_dispatch(model: eqx.Module, mesh) -> int:
    """1 for a model with convolution layers on CPU (see `fit`), else 100."""
    platform = jax.default_backend() if mesh is None else mesh.devices.flat[0].platform
    is_conv = lambda m: isinstance(m, (eqx.nn.Conv, eqx.nn.ConvTranspose))  # noqa: E731
    has_conv = any(is_conv(m) for m in jax.tree.leaves(model, is_leaf=is_conv))
    return 1 if platform == "cpu" and has_conv else 100


@typechecked
def fit(
    model: eqx.Module,
    objective: AbstractObjective,
    data: FloatArrayLike,
    *,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    ema_rate: float | None = 0.999,
    steps_per_dispatch: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    devices: Devices = None,
    condition: Any = None,
    condition_dropout: float = 0.0,
    null_condition: Any = None,
    overwrite: bool = False,
    metadata: dict | None = None,
) -> FitResult:
    r"""Trains `model` (a score `model(t, x)` of one sample, or `model(t, x, c)` with
    `condition=`) by minimising `objective` on minibatches of `data`.

    Each epoch visits the data in a fresh random order (minibatch $k$ of epoch $e$ comes
    from `permutation(fold_in(key, e))`, the remainder dropped), and step $k$'s loss key
    is `fold_in(key, k)`, so a run is a function of `key` alone: resuming from a
    checkpoint gives the same parameters as never stopping. `steps_per_dispatch` steps
    are fused into one `lax.scan` per jitted call, so Python's per-step overhead vanishes;
    the progress bar shows the mean loss of each dispatch.

    Arrays inside an SDE that the model holds (e.g. a
    [`NoisePrediction`][scoresde.NoisePrediction]'s `sde`) are not trained.

    **Arguments:**

    - `model`: the score model, an Equinox module.
    - `objective`: an [`AbstractObjective`][scoresde.AbstractObjective].
    - `data`: training data `(n, *data_shape)`, finite.
    - `optimizer`: an Optax transformation, e.g. `optax.adam(1e-3)`.
    - `num_steps`: the TOTAL number of steps; with `resume=True`, training continues from
      the checkpoint's step up to `num_steps`.
    - `batch_size`: data points per step, at most `len(data)`.
    - `key`: the run's PRNG key (a resumed run uses the checkpoint's key).
    - `ema_rate`: the EMA decay of the returned model (warm-up
      $\min(\text{rate}, \frac{1+k}{10+k})$); `None` for no EMA.
    - `steps_per_dispatch`: steps per jitted call. Default: 100, but 1 for a model with
      Equinox convolution layers trained on CPU: XLA:CPU computes the gradient's
      convolutions inside a loop body 15-20x more slowly than outside one (jax-ml/jax#12868;
      one step of the default `UNet` on 32 images of 28x28, 2 cores: 6.9 s inside the loop,
      0.37 s alone, `benchmarks/conv_loops.py`), far more than a dispatch costs.
    - `checkpoint`: a file to save the [`TrainState`][scoresde.TrainState] and the loss
      history to, atomically, every `checkpoint_every` steps and at the end. It also
      records how the model was built and the objective's SDE. Its folder is checked for
      writing before the first step; if a save fails later anyway (disk full), training
      goes on, the result is returned, and one warning says where nothing could be saved.
    - `resume`: continue from `checkpoint` (which must exist and match the model, the
      optimiser and the objective's SDE, else a clear error).
    - `overwrite`: with `resume=False`, replace an existing `checkpoint` file. By default
      an existing file is an error (as in the CLI), so a finished run is never lost to a
      rerun by mistake.
    - `progress`: show a tqdm progress bar.
    - `metadata`: a JSON-able dict stored in every checkpoint beside the step and the loss
      history (read it back with [`read_metadata`][scoresde.read_metadata]), e.g. the
      configuration of the run.
    - `devices`: data parallelism: `None` (default) for every device when `batch_size`
      divides evenly over them (else one device, with a warning), a list of devices, or a
      1-D `jax.sharding.Mesh`. Each step's batch is split over the devices, parameters and
      optimiser state are replicated, and XLA reduces the gradients. With several
      processes (`jax.distributed.initialize()`), each process passes its own shard of the
      data; the shards together form the data set.
    - `condition`: for a conditional model `model(t, x, c)`, the condition of each data
      point: a pytree whose leaves have a leading axis of `len(data)` (class labels `(n,)`,
      feature vectors `(n, m)`), shuffled together with the data. With several processes,
      each passes the conditions of its own shard.
    - `condition_dropout`: probability $p \in [0, 1)$ that a training pair's condition is
      replaced by `null_condition` (Ho & Salimans' label dropout), so one network learns
      both $p(x \mid c)$ and $p(x)$ for
      [`ClassifierFreeGuidance`][scoresde.ClassifierFreeGuidance]. Drawn from the run's
      key and the step, so it is reproducible and resumes exactly.
    - `null_condition`: the condition meaning "none", shaped like one row of `condition`
      (for a network with `num_classes=k`, the null label `k`).

    **Returns:** a [`FitResult`][scoresde.FitResult].
    """
    if not isinstance(objective, AbstractObjective):
        raise TypeError(
            f"`objective` must be an AbstractObjective, got {type(objective).__name__}."
        )
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"`optimizer` must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), got "
            f"{type(optimizer).__name__}."
        )
    check_num("num_steps", num_steps)
    if steps_per_dispatch is not None:
        check_num("steps_per_dispatch", steps_per_dispatch)
    if ema_rate is not None and not 0 <= ema_rate < 1:
        raise ValueError(f"`ema_rate` must lie in [0, 1) or be None, got {ema_rate}.")
    if checkpoint_every is not None:
        check_num("checkpoint_every", checkpoint_every)
        if checkpoint is None:
            raise ValueError("`checkpoint_every` needs a `checkpoint` file to write to.")
    if resume and checkpoint is None:
        raise ValueError("`resume=True` needs the `checkpoint` file to resume from.")
    if checkpoint is not None and not resume and not overwrite and os.path.exists(checkpoint):
        raise FileExistsError(
            f"`checkpoint` {checkpoint} already exists: pass resume=True to continue that run, "
            "overwrite=True to replace it, or another file."
        )
    metadata = _check_metadata(metadata)
    if checkpoint is not None:
        check_writable(checkpoint)
    data = _check_data(data, batch_size)
    objective.check(data.shape[1:])
    objective.check_model(model)
    for sde in (sdes_in(objective) or sdes_in(model))[:1]:
        warn_prior_mismatch(sde, float(jnp.mean(jnp.square(data))))
    condition, null = _check_conditioning(
        model, condition, condition_dropout, null_condition, data.shape[0]
    )
    check_score(
        model,
        data.shape[1:],
        "one data point",
        t=0.0,
        condition=one_condition(condition),
        name="model",
    )
    mesh = resolve_mesh(devices, batch_size, "`batch_size`")
    if steps_per_dispatch is None:
        steps_per_dispatch = _default_steps_per_dispatch(model, mesh)
    data = global_data(mesh, data)
    condition = jax.tree.map(lambda c: global_data(mesh, c), condition)

    conditioning = _conditioning_record(condition, condition_dropout, null)
    recipe = _model_recipe(model)
    record = {
        **metadata,
        "conditioning": conditioning,
        "objective": _objective_record(objective),
    }
    state = init_state(model, optimizer, key)
    losses = np.zeros((0,), np.float32)
    if resume:
        state, meta = load_checkpoint(checkpoint, state)
        losses = np.asarray(meta["losses"], np.float32)
        if len(losses) != int(state.step):
            raise ValueError(f"{checkpoint}: loss history and step disagree; it is corrupt.")
        saved = meta.get("conditioning")
        if saved is not None and saved != conditioning:
            raise ValueError(
                f"{checkpoint} was trained with conditioning {saved}, but this call has "
                f"{conditioning}; resume with the same `condition`, `condition_dropout` and "
                "`null_condition`."
            )
        _check_same_sde(checkpoint, meta.get("objective"), record["objective"])

    state = replicated(mesh, state)
    from tqdm.auto import tqdm  # here, not at import: in Jupyter it warns without ipywidgets

    done = int(state.step)
    history = [losses]
    bar = tqdm(total=num_steps, initial=min(done, num_steps), disable=not progress, unit="step")
    saved_step, failures = (done if resume else None), []
    try:
        while done < num_steps:
            chunk = min(steps_per_dispatch, num_steps - done)
            if checkpoint_every is not None:
                chunk = min(chunk, checkpoint_every - done % checkpoint_every)
            state, chunk_losses = _train_chunk(
                state,
                objective,
                optimizer,
                data,
                condition,
                null,
                float(condition_dropout),
                chunk,
                batch_size,
                ema_rate,
                mesh,
            )
            chunk_losses = np.asarray(chunk_losses)
            if not np.all(np.isfinite(chunk_losses)):
                first = done + int(np.argmax(~np.isfinite(chunk_losses)))
                raise FloatingPointError(
                    f"The training loss became non-finite at step {first}; lower the "
                    "learning rate, or check the data scale and the objective's eps."
                )
            done += chunk
            history.append(chunk_losses)
            bar.update(chunk)
            bar.set_postfix(loss=f"{chunk_losses.mean():.4g}")
            if checkpoint is not None and (
                done == num_steps or (checkpoint_every and done % checkpoint_every == 0)
            ):
                try:
                    _save(checkpoint, state, np.concatenate(history), record, recipe)
                    saved_step = done
                except OSError as e:  # keep the trained model; say so once, at the end
                    failures.append((done, e))
    finally:
        bar.close()
        if failures:
            _warn_unsaved(checkpoint, failures, saved_step)

    raw = state.model
    return FitResult(
        model=raw if ema_rate is None else state.ema_model,
        raw_model=raw,
        losses=np.concatenate(history),
        state=state,
    )


def _conditioning_record(condition, dropout, null) -> dict:
    """What a resumed run must share with the run that wrote the checkpoint."""
    rows = None if condition is None else jax.tree.map(lambda c: list(c.shape[1:]), condition)
    # Through JSON and back, so it compares equal to the one read from a checkpoint.
    return json.loads(
        json.dumps(
            {
                "condition_shapes": rows,
                "condition_dropout": float(dropout),
                "null_condition": None
                if null is None
                else jax.tree.map(lambda n: n.tolist(), null),
            }
        )
    )


def _objective_record(objective) -> dict:
    from ._recipe import describe_objective

    return describe_objective(objective)


def _model_recipe(model) -> dict | None:
    """How to rebuild `model` (see `save_model`), or None for a class of the user's own."""
    from ._recipe import describe

    try:
        return {"recipe": describe(model), "at": ".ema_model"}
    except (TypeError, ValueError):
        return None


_RESERVED = ("step", "losses", "scoresde", "conditioning", "objective")


def _check_metadata(metadata) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise TypeError(
            f"`metadata` must be a dict with string keys, got {type(metadata).__name__}."
        )
    taken = sorted(set(metadata) & set(_RESERVED))
    if taken:
        raise ValueError(
            f"`metadata` uses the key(s) {taken}, which fit records itself; rename them."
        )
    try:
        return json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"`metadata` must be JSON-able (numbers, strings, lists, dicts): {e}."
        ) from e


def _check_same_sde(checkpoint, saved: dict | None, given: dict) -> None:
    """A resumed run must learn the score of the same SDE's marginals (older checkpoints
    record no objective: nothing to check)."""
    from ._recipe import summary

    if saved is None or saved.get("sde") == given["sde"]:
        return
    raise CheckpointError(
        f"{checkpoint} was trained for the SDE {summary(saved['sde'])}, but this call's "
        f"objective has {summary(given['sde'])}; resume with the objective's SDE as saved, "
        "or start a new run (resume=False)."
    )


def _warn_unsaved(checkpoint, failures: list, saved_step: int | None) -> None:
    steps = ", ".join(str(step) for step, _ in failures)
    error = failures[-1][1]
    holds = f"it holds step {saved_step}" if saved_step is not None else "no checkpoint was written"
    warnings.warn(
        f"fit could not save the checkpoint {checkpoint} at step(s) {steps} "
        f"({type(error).__name__}: {error}); {holds}. The returned result has the trained "
        "model: save it with save_checkpoint(path, result.state) or save_model.",
        RuntimeWarning,
        stacklevel=3,
    )


def _save(path, state: TrainState, losses: np.ndarray, record: dict, recipe) -> None:
    from .. import __version__

    meta = {
        **record,
        "step": int(state.step),
        "losses": losses.tolist(),
        "scoresde": __version__,
    }
    write(pathlib.Path(path), state, metadata=meta, model=recipe)
