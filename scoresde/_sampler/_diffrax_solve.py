"""What ReverseSDE and ProbabilityFlowODE share: one Diffrax solve from T down to eps."""

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp

from .._custom_types import Array, Data, Float
from .._sde import AbstractSDE
from ._base import check_denoise, check_eps, check_num, resolve_eps, ScoreFn, Stats, tweedie_denoise
from ._grid import AbstractTimeGrid


def score_evals_per_step(solver: dfx.AbstractSolver, is_sde: bool) -> tuple[int, int] | None:
    """(score evaluations per attempted step, extra evaluations at the start), or `None`
    for a solver whose count we do not know."""
    if isinstance(solver, dfx.Euler):
        return 1, 0
    if isinstance(solver, dfx.AbstractSRK):
        ignore = solver.tableau.ignore_stage_f
        stages = len(solver.tableau.b_sol)
        return (stages if ignore is None else int((~ignore).sum())), 0
    if isinstance(solver, dfx.AbstractRungeKutta) and isinstance(
        solver.tableau, dfx.ButcherTableau
    ):
        stages = solver.tableau.num_stages
        # Diffrax reuses the last stage as the next first stage (FSAL) only for ODEs: an
        # SDE's vector field depends on the Brownian increment of the step.
        if solver.tableau.fsal and not is_sde:
            return stages - 1, 1
        return stages, 0
    return None


def check_solve(
    sde: AbstractSDE,
    num_steps: int | None,
    stepsize_controller: dfx.AbstractStepSizeController | None,
    eps: float | None,
    denoise: bool,
    max_steps: int,
) -> None:
    """The checks of a `DiffraxSolve`'s fields, as a plain function: it runs on every
    `sample()` call, and building modules (an Equinox bound method is one) costs tens of
    microseconds each."""
    check_eps(sde, eps)
    check_denoise(sde, denoise)
    check_num("max_steps", max_steps)
    if num_steps is not None:
        check_num("num_steps", num_steps)
    if (num_steps is None) == (stepsize_controller is None):
        raise ValueError(
            "Give exactly one of `num_steps` (fixed steps on `grid`) and "
            "`stepsize_controller` (for example diffrax.PIDController(rtol=1e-3, atol=1e-3))."
        )
    if stepsize_controller is not None and not isinstance(
        stepsize_controller, dfx.AbstractAdaptiveStepSizeController
    ):
        raise ValueError(
            "`stepsize_controller` is for adaptive steps; for fixed steps pass `num_steps` "
            "(and a `grid`) instead."
        )


class DiffraxSolve(eqx.Module):
    """The time stepping shared by the Diffrax-based samplers (not public)."""

    solver: dfx.AbstractSolver
    num_steps: int | None = eqx.field(static=True)
    stepsize_controller: dfx.AbstractStepSizeController | None
    grid: AbstractTimeGrid
    eps: float | None = eqx.field(static=True)
    denoise: bool = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    @property
    def adaptive(self) -> bool:
        return self.stepsize_controller is not None

    def grid_times(self, sde: AbstractSDE) -> Float[Array, " n+1"]:
        return self.grid.times(sde, self.num_steps, resolve_eps(sde, self.eps))

    def save_times(self, sde: AbstractSDE, num: int) -> Float[Array, " num"]:
        eps = resolve_eps(sde, self.eps)
        if self.adaptive:
            return jnp.linspace(sde.T, eps, num)
        idx = jnp.round(jnp.linspace(0, self.num_steps, num)).astype(jnp.int32)
        return self.grid_times(sde)[idx]

    def solve(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        terms: dfx.AbstractTerm,
        y0: Data,
        save_ts: Float[Array, " k"] | None,
        is_sde: bool,
        grid_ts: Float[Array, " n+1"] | None = None,
    ) -> tuple[Data, Float[Array, "k *data"] | None, Stats]:
        """One solve from T to eps. `grid_ts` (decreasing) is the fixed-step grid if the
        caller has already computed it: the Brownian path must see the very same values."""
        eps = resolve_eps(sde, self.eps)
        if self.adaptive:
            controller = self.stepsize_controller
            dt0 = -0.01 * (sde.T - eps)
        else:
            controller = dfx.StepTo(ts=self.grid_times(sde) if grid_ts is None else grid_ts)
            dt0 = None
        max_steps = self.max_steps if self.adaptive else self.num_steps
        saveat = dfx.SaveAt(t1=True, ts=save_ts)
        sol = dfx.diffeqsolve(
            terms,
            self.solver,
            t0=sde.T,
            t1=eps,
            dt0=dt0,
            y0=y0,
            saveat=saveat,
            stepsize_controller=controller,
            max_steps=max_steps,
        )
        ys = sol.ys
        assert ys is not None
        # Diffrax stacks the `ts` snapshots first and the state at t1 last.
        traj = None if save_ts is None else ys[:-1]
        x, stats = ys[-1], self._stats(sol, is_sde)
        if self.denoise:
            x = tweedie_denoise(sde, score, eps, x)
            stats["num_score_evals"] = stats["num_score_evals"] + 1
        return x, traj, stats

    def _stats(self, sol: dfx.Solution, is_sde: bool) -> Stats:
        accepted = sol.stats["num_accepted_steps"]
        rejected = sol.stats["num_rejected_steps"]
        per_step = score_evals_per_step(self.solver, is_sde)
        if per_step is None:
            evals = jnp.asarray(-1, jnp.int32)
        else:
            evals = per_step[0] * (accepted + rejected) + per_step[1]
        return {
            "num_steps": jnp.asarray(accepted, jnp.int32),
            "num_rejected_steps": jnp.asarray(rejected, jnp.int32),
            "num_score_evals": jnp.asarray(evals, jnp.int32),
        }
