"""What ReverseSDE and ProbabilityFlowODE share: one Diffrax solve from T down to eps."""

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp

from .._custom_types import Array, Data, Float
from .._sde import AbstractLinearSDE, AbstractSDE
from .._solver import AbstractExponentialSolver
from ._base import (
    AbstractSampler,
    check_denoise,
    check_eps,
    check_num,
    make_stats,
    resolve_eps,
    ScoreFn,
    Stats,
    tweedie_denoise,
)
from ._grid import AbstractTimeGrid, check_grid


def score_evals_per_step(solver: dfx.AbstractSolver, is_sde: bool) -> tuple[int, int] | None:
    """(score evaluations per attempted step, extra evaluations at the start), or `None`
    for a solver whose count we do not know."""
    if isinstance(solver, (dfx.Euler, AbstractExponentialSolver)):
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


def solution_stats(
    sol: dfx.Solution, solver: dfx.AbstractSolver, is_sde: bool, extra: int = 0
) -> Stats:
    """Steps, rejected steps and score evaluations of one Diffrax solve, plus `extra`
    evaluations made around it (-1 evaluations for a solver whose count is unknown)."""
    accepted = sol.stats["num_accepted_steps"]
    rejected = sol.stats["num_rejected_steps"]
    per_step = score_evals_per_step(solver, is_sde)
    evals = -1 if per_step is None else per_step[0] * (accepted + rejected) + per_step[1] + extra
    return make_stats(accepted, rejected, evals)


def check_solve(sol: dfx.Solution, y, field_at_start, caller: str):
    """`y`, or a runtime error saying why the (adaptive, `throw=False`) solve `sol` failed.

    A score that returns NaN or inf makes every step's error estimate infinite, so the
    controller rejects every step and Diffrax reports the step budget as spent: the
    vector field at the start (`field_at_start`) tells the two causes apart."""
    failed = sol.result != dfx.RESULTS.successful
    nonfinite = ~jnp.all(jnp.isfinite(field_at_start))
    y = eqx.error_if(
        y,
        failed & nonfinite,
        f"{caller}: the score returned NaN or inf at the start of the solve, so the adaptive "
        "solver rejected every step; check the score (call it on one sample there).",
    )
    return eqx.error_if(
        y,
        failed & ~nonfinite,
        f"{caller}: the adaptive solve did not reach its end: it took `max_steps` steps, or "
        "the score turned NaN or inf along the way (every step is then rejected). With a "
        "finite score, raise `max_steps` or loosen the controller's rtol/atol.",
    )


class AbstractDiffraxSampler(AbstractSampler):
    """A sampler that is one Diffrax solve from $T$ down to $\\epsilon$, with fixed steps
    placed by a time grid or adaptive steps; the base of
    [`ReverseSDE`][scoresde.ReverseSDE] and
    [`ProbabilityFlowODE`][scoresde.ProbabilityFlowODE].

    A subclass provides the fields below and `sample_one`, which builds its terms and
    initial state and calls `solve`. Snapshot times are diffusion times: with fixed steps
    they are snapped to the grid, with adaptive steps Diffrax interpolates.
    """

    solver: eqx.AbstractVar[dfx.AbstractSolver]
    num_steps: eqx.AbstractVar[int | None]
    stepsize_controller: eqx.AbstractVar[dfx.AbstractStepSizeController | None]
    grid: eqx.AbstractVar[AbstractTimeGrid]
    eps: eqx.AbstractVar[float | None]
    denoise: eqx.AbstractVar[bool]
    max_steps: eqx.AbstractVar[int]

    def __check_init__(self):
        check_num("max_steps", self.max_steps)
        if self.num_steps is not None:
            check_num("num_steps", self.num_steps)
        if (self.num_steps is None) == (self.stepsize_controller is None):
            raise ValueError(
                "Give exactly one of `num_steps` (fixed steps on `grid`) and "
                "`stepsize_controller` (for example diffrax.PIDController(rtol=1e-3, atol=1e-3))."
            )
        if self.stepsize_controller is not None and not isinstance(
            self.stepsize_controller, dfx.AbstractAdaptiveStepSizeController
        ):
            raise ValueError(
                "`stepsize_controller` is for adaptive steps; for fixed steps pass `num_steps` "
                "(and a `grid`) instead."
            )
        if (
            isinstance(self.solver, AbstractExponentialSolver)
            and self.stepsize_controller is not None
        ):
            raise ValueError(
                f"{type(self.solver).__name__} takes fixed steps only (it makes no error "
                "estimate, and its multistep history assumes the steps it was given): pass "
                "`num_steps` (and a `grid`, e.g. LogSNRGrid()) instead of `stepsize_controller`."
            )
        if not isinstance(self.grid, AbstractTimeGrid):
            raise TypeError(
                f"`grid` must be an AbstractTimeGrid such as UniformGrid(), got "
                f"{type(self.grid).__name__}."
            )

    @property
    def adaptive(self) -> bool:
        return self.stepsize_controller is not None

    def check(self, sde: AbstractSDE) -> None:
        check_eps(sde, self.eps)
        check_denoise(sde, self.denoise)
        if not self.adaptive:
            check_grid(self.grid, sde, self.num_steps, resolve_eps(sde, self.eps))
        if isinstance(self.solver, AbstractExponentialSolver) and not isinstance(
            sde, AbstractLinearSDE
        ):
            raise TypeError(
                f"{type(self.solver).__name__} steps in the log-SNR of a linear SDE (VPSDE, "
                f"SubVPSDE, VESDE); {type(sde).__name__} is not one. Use a Diffrax solver such "
                "as diffrax.Heun() or diffrax.Tsit5()."
            )

    def clock(self, sde: AbstractSDE) -> Float[Array, " n+1"] | None:
        if self.adaptive:
            return None
        return self.grid.times(sde, self.num_steps, resolve_eps(sde, self.eps))

    def clock_range(self, sde: AbstractSDE) -> tuple[float, float]:
        return float(sde.T), resolve_eps(sde, self.eps)

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
        caller has already computed it: a Brownian path must see the very same values."""
        eps = resolve_eps(sde, self.eps)
        if self.adaptive:
            controller = self.stepsize_controller
            dt0 = -0.01 * (sde.T - eps)
        else:
            controller = dfx.StepTo(ts=self.clock(sde) if grid_ts is None else grid_ts)
            dt0 = None
        sol = dfx.diffeqsolve(
            terms,
            self.solver,
            t0=sde.T,
            t1=eps,
            dt0=dt0,
            y0=y0,
            saveat=dfx.SaveAt(t1=True, ts=save_ts),
            stepsize_controller=controller,
            max_steps=self.max_steps if self.adaptive else self.num_steps,
            throw=not self.adaptive,
        )
        ys = sol.ys
        assert ys is not None
        if self.adaptive:
            ys = check_solve(sol, ys, score(sde.T, y0), f"sample() with {type(self).__name__}")
        # Diffrax stacks the `ts` snapshots first and the state at t1 last.
        traj = None if save_ts is None else ys[:-1]
        # An adaptive solve's check_solve looks at the score once more, at the start.
        x, stats = ys[-1], solution_stats(sol, self.solver, is_sde, extra=int(self.adaptive))
        if self.denoise:
            x = tweedie_denoise(sde, score, eps, x)
            stats["num_score_evals"] = stats["num_score_evals"] + 1
        return x, traj, stats
