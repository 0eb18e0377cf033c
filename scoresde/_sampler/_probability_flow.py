import diffrax as dfx
import equinox as eqx

from .._checks import static_number
from .._custom_types import Array, Data, Float, PRNGKeyArray
from .._sde import AbstractSDE
from ._base import initial_state, ScoreFn, split2, Stats
from ._diffrax_sampler import AbstractDiffraxSampler
from ._grid import AbstractTimeGrid, UniformGrid


class ProbabilityFlowODE(AbstractDiffraxSampler):
    r"""Integrates the probability-flow ODE
    $\dot x = f(t, x) - \tfrac12 g(t)^2 s(t, x)$ from a prior draw at $T$ down to
    $\epsilon$ with any Diffrax ODE solver. Its marginals equal the SDE's, so with the exact
    score it samples $p_\epsilon$; the only randomness is the prior draw.

    **Arguments:**

    - `solver`: a Diffrax ODE solver (default `diffrax.Tsit5()`), or one of the
      exponential integrators [`DDIM`][scoresde.DDIM], [`DPMSolverPP`][scoresde.DPMSolverPP],
      [`UniPC`][scoresde.UniPC] (fixed steps, a linear SDE; best on `LogSNRGrid()`).
    - `num_steps`: number of fixed steps, placed by `grid`; not with `stepsize_controller`.
    - `stepsize_controller`: adaptive steps (default, when `num_steps` is not given,
      `diffrax.PIDController(rtol=1e-5, atol=1e-5)`).
    - `grid`, `eps`, `denoise`, `max_steps`: as for [`ReverseSDE`][scoresde.ReverseSDE].
    """

    solver: dfx.AbstractSolver
    num_steps: int | None = static_number()
    stepsize_controller: dfx.AbstractStepSizeController | None
    grid: AbstractTimeGrid
    eps: float | None = static_number()
    denoise: bool = eqx.field(static=True)
    max_steps: int = static_number()

    def __init__(
        self,
        solver: dfx.AbstractSolver = dfx.Tsit5(),
        num_steps: int | None = None,
        stepsize_controller: dfx.AbstractStepSizeController | None = None,
        *,
        grid: AbstractTimeGrid = UniformGrid(),
        eps: float | None = None,
        denoise: bool = False,
        max_steps: int = 16_384,
    ):
        if num_steps is None and stepsize_controller is None:
            stepsize_controller = dfx.PIDController(rtol=1e-5, atol=1e-5)
        self.solver = solver
        self.num_steps = num_steps
        self.stepsize_controller = stepsize_controller
        self.grid = grid
        self.eps = eps
        self.denoise = denoise
        self.max_steps = max_steps

    def __check_init__(self):
        if isinstance(self.solver, dfx.AbstractSRK) or not isinstance(
            self.solver, dfx.AbstractSolver
        ):
            raise ValueError(
                f"`solver` must be a Diffrax ODE solver (Tsit5, Heun, Dopri5, ...), got "
                f"{type(self.solver).__name__}."
            )

    def sample_one(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        key: PRNGKeyArray,
        save_ts: Float[Array, " k"] | None,
        initial: Data | None = None,
    ) -> tuple[Data, Float[Array, "k *data"] | None, Stats]:
        key_prior, _ = split2(key)
        y0 = initial_state(sde, key_prior, data_shape, initial=initial)
        terms = sde.probability_flow_term(score, self.num_steps)
        return self.solve(sde, score, terms, y0, save_ts, is_sde=False)
