from typing import Literal

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp

from .._checks import static_number
from .._custom_types import Array, Data, Float, PRNGKeyArray
from .._sde import AbstractSDE, GridBrownianPath
from .._solver import AbstractExponentialSolver
from ._base import initial_state, resolve_eps, ScoreFn, split2, Stats
from ._diffrax_sampler import AbstractDiffraxSampler
from ._grid import AbstractTimeGrid, UniformGrid


class ReverseSDE(AbstractDiffraxSampler):
    r"""Integrates the reverse-time SDE
    $\mathrm{d}x = [f(t,x) - g(t)^2 s(t, x)]\,\mathrm{d}t + g(t)\,\mathrm{d}\bar w$
    from the prior at $T$ down to $\epsilon$ with any Diffrax SDE solver.

    Fixed steps (`num_steps`, placed by `grid`) or adaptive steps (`stepsize_controller`).
    `diffrax.Euler()` is Euler–Maruyama; `diffrax.Heun()` converges to the same solution
    because the noise is additive ($g$ does not depend on $x$).

    Diffrax's stochastic Runge–Kutta solvers (SRA1, ShARK, ...) are refused: in Diffrax
    0.7 they integrate forward in time even when $t_1 < t_0$ (measured on the VP SDE), so a
    reverse-time solve with them would be silently wrong.

    The Brownian path: `"grid"` ([`GridBrownianPath`][scoresde.GridBrownianPath], one normal
    draw per step; the default for fixed steps) or `"tree"` (`diffrax.VirtualBrownianTree`;
    required and the default for adaptive steps). Both are reproducible from the key. With
    adaptive steps, samples drawn in batches of different sizes agree only up to
    floating-point noise, since an accept/reject decision can flip.

    **Arguments:**

    - `solver`: a Diffrax SDE solver (default `diffrax.Euler()`), or
      [`DPMSolverPP`][scoresde.DPMSolverPP] / [`DDIM`][scoresde.DDIM], whose stochastic
      variants (SDE-DPM-Solver++, ancestral DDIM) take the noise from the Brownian path.
    - `num_steps`: number of fixed steps (default 1000 when no controller is given).
    - `stepsize_controller`: an adaptive controller such as
      `diffrax.PIDController(rtol=1e-3, atol=1e-3)`; not with `num_steps`.
    - `grid`: where fixed steps fall (`UniformGrid()`, `EDMGrid(rho=7)`, `LogSNRGrid()`).
    - `brownian`: `"grid"` or `"tree"` (default: the right one for the step choice).
    - `brownian_tol`: resolution of the virtual Brownian tree, as a fraction of
      $T - \epsilon$ (default $2^{-14}$ adaptive; half the smallest step for fixed steps).
    - `eps`: the end time (default: the SDE's `default_eps`).
    - `denoise`: finish with one Tweedie denoising step at $\epsilon$ (one more score
      evaluation).
    - `max_steps`: the most steps an adaptive solve may take before it raises.
    """

    solver: dfx.AbstractSolver
    num_steps: int | None = static_number()
    stepsize_controller: dfx.AbstractStepSizeController | None
    grid: AbstractTimeGrid
    brownian: Literal["grid", "tree"] = eqx.field(static=True)
    brownian_tol: float | None = static_number()
    eps: float | None = static_number()
    denoise: bool = eqx.field(static=True)
    max_steps: int = static_number()

    def __init__(
        self,
        solver: dfx.AbstractSolver = dfx.Euler(),
        num_steps: int | None = None,
        stepsize_controller: dfx.AbstractStepSizeController | None = None,
        *,
        grid: AbstractTimeGrid = UniformGrid(),
        brownian: Literal["grid", "tree"] | None = None,
        brownian_tol: float | None = None,
        eps: float | None = None,
        denoise: bool = False,
        max_steps: int = 16_384,
    ):
        if num_steps is None and stepsize_controller is None:
            num_steps = 1000
        if brownian is None:
            brownian = "grid" if stepsize_controller is None else "tree"
        self.solver = solver
        self.num_steps = num_steps
        self.stepsize_controller = stepsize_controller
        self.grid = grid
        self.brownian = brownian
        self.brownian_tol = brownian_tol
        self.eps = eps
        self.denoise = denoise
        self.max_steps = max_steps

    def __check_init__(self):
        if self.brownian not in ("grid", "tree"):
            raise ValueError(f"`brownian` must be 'grid' or 'tree', got {self.brownian!r}.")
        if self.brownian == "grid" and self.stepsize_controller is not None:
            raise ValueError(
                "Adaptive steps need brownian='tree' (diffrax.VirtualBrownianTree): the "
                "grid path only knows the increments of a fixed grid."
            )
        if self.brownian_tol is not None and not 0 < self.brownian_tol < 1:
            raise ValueError(f"`brownian_tol` must lie in (0, 1), got {self.brownian_tol}.")
        if isinstance(self.solver, dfx.AbstractSRK):
            raise ValueError(
                f"`solver={type(self.solver).__name__}()` is not supported: Diffrax's stochastic "
                "Runge-Kutta solvers ignore the direction of a reverse-time solve (t1 < t0) and "
                "would integrate forward. Use diffrax.Euler() or diffrax.Heun()."
            )
        if isinstance(self.solver, AbstractExponentialSolver) and not self.solver.supports_sde:
            raise ValueError(
                f"{type(self.solver).__name__} integrates the probability-flow ODE only; use it "
                "with ProbabilityFlowODE, or DPMSolverPP / DDIM with ReverseSDE."
            )
        if not isinstance(self.solver, (dfx.AbstractItoSolver, dfx.AbstractStratonovichSolver)):
            raise ValueError(
                f"`solver` must be an SDE solver (Euler, Heun, ...), got "
                f"{type(self.solver).__name__}."
            )

    def _brownian_path(self, sde: AbstractSDE, data_shape, key: PRNGKeyArray, grid_ts):
        """`grid_ts` is the fixed-step grid, or `None` for adaptive steps."""
        if self.brownian == "grid":
            # The solve steps with StepTo on these very times: no query can be off the grid.
            return GridBrownianPath(grid_ts[::-1], data_shape, key, check_queries=False)
        t_lo = resolve_eps(sde, self.eps)
        if self.brownian_tol is not None:
            tol = self.brownian_tol * (sde.T - t_lo)
        elif grid_ts is None:
            tol = (sde.T - t_lo) * 2.0**-14
        else:
            tol = 0.5 * jnp.abs(jnp.diff(grid_ts)).min()
        return dfx.VirtualBrownianTree(t_lo, sde.T, tol=tol, shape=data_shape, key=key)

    def sample_one(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        key: PRNGKeyArray,
        save_ts: Float[Array, " k"] | None,
        initial: Data | None = None,
    ) -> tuple[Data, Float[Array, "k *data"] | None, Stats]:
        key_prior, key_path = split2(key)
        y0 = initial_state(sde, key_prior, data_shape, initial=initial)
        grid_ts = self.clock(sde)
        path = self._brownian_path(sde, data_shape, key_path, grid_ts)
        terms = sde.reverse_terms(score, path, self.num_steps)
        return self.solve(sde, score, terms, y0, save_ts, is_sde=True, grid_ts=grid_ts)
