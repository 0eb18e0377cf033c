"""The probability-flow ODE run forwards: data to latents."""

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (
    check_callable,
    check_eps,
    check_finite_rows,
    check_nonempty,
    check_num,
    check_score,
    runtime_errors,
)
from .._condition import bind, one_condition, prepare_condition
from .._custom_types import Array, Float, FloatArrayLike
from .._sampler._diffrax_sampler import check_solve
from .._sampler._grid import AbstractTimeGrid, check_grid, UniformGrid
from .._sde import AbstractLinearSDE, AbstractSDE
from .._sde._base import check_score_sde
from .._sharding import batch_sharding, Devices, map_batch, resolve_mesh
from .._solver import AbstractExponentialSolver
from .._typecheck import typechecked


@eqx.filter_jit
def _encode_jit(sde, score, x, solver, controller, grid, num_steps, eps, max_steps, mesh, chunk, c):
    check_score(score, x.shape[1:], "one row of `x`", t=sde.T, condition=one_condition(c))

    def one(x, c, sde, score, solver, controller):
        terms = sde.probability_flow_term(bind(score, c), num_steps)
        if num_steps is None:
            step_control, dt0 = controller, 0.01 * (sde.T - eps)
        else:
            # The grids run from T down to eps; encoding walks them the other way.
            step_control, dt0 = dfx.StepTo(ts=grid.times(sde, num_steps, eps)[::-1]), None
        sol = dfx.diffeqsolve(
            terms,
            solver,
            t0=eps,
            t1=sde.T,
            dt0=dt0,
            y0=x,
            stepsize_controller=step_control,
            max_steps=max_steps if num_steps is None else num_steps,
            throw=num_steps is not None,
        )
        if num_steps is None:
            return check_solve(sol, sol.ys, bind(score, c)(eps, x), "encode()")[-1]
        return sol.ys[-1]

    def block(batch, *args):
        x, cs = batch
        z = jax.vmap(lambda x, c: one(x, c, *args))(x, cs)
        return eqx.error_if(
            z,
            ~jnp.all(jnp.isfinite(z)),
            "encode(): a latent is NaN or inf: the score returned a non-finite value, or the "
            "ODE solve failed (raise max_steps, loosen rtol/atol, or check eps).",
        )

    args = (sde, score, solver, controller)
    return map_batch(block, (x, c), mesh=mesh, chunk_size=chunk, replicated_args=args)


@typechecked
def encode(
    sde: AbstractSDE,
    score: Callable,
    x: FloatArrayLike,
    *,
    solver: dfx.AbstractSolver = dfx.Tsit5(),
    stepsize_controller: dfx.AbstractAdaptiveStepSizeController = dfx.PIDController(
        rtol=1e-5, atol=1e-5
    ),
    num_steps: int | None = None,
    grid: AbstractTimeGrid = UniformGrid(),
    eps: float | None = None,
    max_steps: int = 4096,
    devices: Devices = None,
    chunk_size: int | None = None,
    condition: Any = None,
) -> Float[Array, "n *data"]:
    r"""The latents of data: each row of `x` carried by the probability-flow ODE
    $\dot x = f(t, x) - \tfrac12 g(t)^2 \nabla\log p_t(x)$ from $\epsilon$ up to $T$.

    This is the flow's encoding, the same map whose end point
    [`log_prob`][scoresde.log_prob] reports as `latent` (equal up to the solver's
    tolerance: `log_prob` also integrates the divergence). Decoding is the same ODE run
    back down: `sample(sde, score, ProbabilityFlowODE(), x.shape, key=key, initial=z)`
    returns `x` up to the two solves' tolerances.

    **Arguments:**

    - `sde`, `score`: as for [`sample`][scoresde.sample].
    - `x`: points at time `eps`, shape `(n, *data_shape)`, finite.
    - `solver`: any Diffrax ODE solver (default `Tsit5()`); the exponential integrators
      ([`DDIM`][scoresde.DDIM], ...) work with `num_steps` (DDIM inversion).
    - `stepsize_controller`: default `PIDController(rtol=1e-5, atol=1e-5)`.
    - `num_steps`, `grid`: fixed steps on `grid` (walked from `eps` up to $T$) instead
      of adaptive ones.
    - `eps`: the time of the data (default the SDE's `default_eps`).
    - `max_steps`: the adaptive solve's step budget.
    - `devices`, `chunk_size`, `condition`: as for [`log_prob`][scoresde.log_prob].

    **Returns:** the latents $x_T$, shape `(n, *data_shape)`.
    """
    if np.ndim(x) < 2:
        raise ValueError(
            f"`x` must have shape (n, *data_shape) with a leading batch axis, got {np.shape(x)}."
        )
    check_nonempty("x", x, "encoding")
    check_finite_rows("x", x, "encoding needs finite points")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(float)
    eps = check_eps(sde, eps, "encode starts the ODE from the data at time eps")
    check_callable(score)
    check_score_sde(sde, score, "encode()")
    condition = prepare_condition(score, condition, x.shape[0], "the number of rows of `x`")
    check_num("max_steps", max_steps)
    if num_steps is not None:
        check_num("num_steps", num_steps)
    if isinstance(solver, AbstractExponentialSolver):
        if num_steps is None:
            raise ValueError(
                f"{type(solver).__name__} takes fixed steps only: pass `num_steps` to encode."
            )
        if not isinstance(sde, AbstractLinearSDE):
            raise TypeError(f"{type(solver).__name__} needs a linear SDE (VPSDE, SubVPSDE, VESDE).")
    if num_steps is not None:
        check_grid(grid, sde, num_steps, eps)
    if chunk_size is not None:
        check_num("chunk_size", chunk_size)
    mesh = resolve_mesh(devices, x.shape[0], "The number of rows of `x`")
    if mesh is not None:
        x = jax.device_put(x, batch_sharding(mesh))
    with runtime_errors():
        return jax.block_until_ready(
            _encode_jit(
                sde,
                score,
                x,
                solver,
                stepsize_controller,
                grid,
                num_steps,
                eps,
                max_steps,
                mesh,
                chunk_size,
                condition,
            )
        )
