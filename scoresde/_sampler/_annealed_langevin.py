import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_level_eps, static_number
from .._custom_types import Array, Data, Float, PRNGKeyArray
from .._sde import AbstractLinearSDE, AbstractSDE
from ._base import (
    AbstractSampler,
    check_denoise,
    check_init_uniform,
    check_num,
    check_positive,
    initial_state,
    make_stats,
    nearest_steps,
    scan_with_snapshots,
    ScoreFn,
    split2,
    Stats,
    tweedie_denoise,
)
from ._grid import AbstractTimeGrid, check_grid, UniformGrid
from ._langevin import langevin_step


class AnnealedLangevin(AbstractSampler):
    r"""Annealed Langevin dynamics (Song & Ermon, 2019): Langevin steps at a decreasing
    sequence of noise levels $\sigma_1 > \dots > \sigma_L$, `steps_per_level` at each,

    $$x \leftarrow x + \tfrac{\alpha_i}{2} s(t_i, x) + \sqrt{\alpha_i}\,z,\qquad
    \alpha_i = \epsilon\,\sigma_i^2/\sigma_L^2 .$$

    The levels are the times $t_1 = T > \dots > t_L = \epsilon$ of `grid`, with
    $\sigma_i = s(t_i)$ the marginal std (the score's scale is $1/s(t)$); for the VE SDE a
    uniform grid gives NCSN's ladder from $\sigma_{\max}$ down. By default the ladder ends
    at the SDE's `level_eps`: for the VE SDE the time at which $s(t) = \sigma_{\min}$, so
    `VESDE(sigma_min=0.1, sigma_max=20)` gives levels from 20 to 0.1, as NCSN's
    $\sigma_1, \sigma_L$ (its exact std vanishes at $t = 0$: at `default_eps` it would be
    0.001, and every $\alpha_i$ about $10^4$ times NCSN's). For another smallest level
    $\sigma_L$ pass `eps=sde.t_from_sigma(sigma_L)`.

    Large noise first lets the chain move between modes, so the mixture weights come out
    right where plain Langevin keeps the initial split (the NCSN toy-example tutorial).

    **Arguments:**

    - `num_levels`: $L$, at least 1.
    - `steps_per_level`: Langevin steps per level.
    - `step_size`: $\epsilon$, the step at the smallest level.
    - `grid`: where the levels fall in time (default uniform).
    - `eps`: the time of the last level (default: the SDE's `level_eps`: the time of
      `sigma_min` for the VE SDE, `default_eps` otherwise).
    - `init_uniform`: start uniform on `[low, high]^d` instead of from the prior.
    - `denoise`: finish with a Tweedie denoising step at the last level.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{song2019generative,
          title={Generative Modeling by Estimating Gradients of the Data Distribution},
          author={Song, Yang and Ermon, Stefano},
          booktitle={NeurIPS}, year={2019}
        }
        ```
    """

    num_levels: int = static_number()
    steps_per_level: int = static_number()
    step_size: float = static_number()
    grid: AbstractTimeGrid = UniformGrid()
    eps: float | None = static_number(default=None)
    init_uniform: tuple[float, float] | None = eqx.field(static=True, default=None)
    denoise: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        check_num("num_levels", self.num_levels)
        check_num("steps_per_level", self.steps_per_level)
        check_positive("step_size", self.step_size)
        check_init_uniform(self.init_uniform)

    def check(self, sde: AbstractSDE) -> None:
        if not isinstance(sde, AbstractLinearSDE):
            raise TypeError("AnnealedLangevin needs a linear SDE (its noise levels s(t)/m(t)).")
        eps = check_level_eps(sde, self.eps, "it is the time of the smallest noise level")
        check_denoise(sde, self.denoise)
        if self.num_levels > 1:
            check_grid(self.grid, sde, self.num_levels - 1, eps)

    def level_times(self, sde: AbstractSDE) -> Float[Array, " L"]:
        assert isinstance(sde, AbstractLinearSDE)
        eps = sde.level_eps if self.eps is None else self.eps
        if self.num_levels == 1:
            return jnp.asarray([eps])
        return self.grid.times(sde, self.num_levels - 1, eps)

    def step_sizes(self, sde: AbstractLinearSDE) -> Float[Array, " L"]:
        r"""$\alpha_i = \epsilon\,\sigma_i^2/\sigma_L^2$ for each level."""
        sigmas = sde.std(self.level_times(sde))
        return self.step_size * (sigmas / sigmas[-1]) ** 2

    @property
    def _num_steps(self) -> int:
        return self.num_levels * self.steps_per_level

    def clock(self, sde: AbstractSDE) -> Float[Array, " n+1"]:
        """The step count over all levels (0 = the initial state): a level's steps share
        one diffusion time."""
        return jnp.arange(self._num_steps + 1, dtype=jnp.result_type(float))

    def sample_one(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        key: PRNGKeyArray,
        save_ts: Float[Array, " k"] | None,
        initial: Data | None = None,
    ) -> tuple[Data, Float[Array, "k *data"] | None, Stats]:
        assert isinstance(sde, AbstractLinearSDE)
        key_init, key_steps = split2(key)
        x0 = initial_state(sde, key_init, data_shape, self.init_uniform, initial)
        times, alphas = self.level_times(sde), self.step_sizes(sde)

        def step(i, x):
            level = i // self.steps_per_level
            return langevin_step(score, times[level], x, alphas[level], jr.fold_in(key_steps, i))

        save_steps = None if save_ts is None else nearest_steps(self.clock(sde), save_ts)
        x, traj = scan_with_snapshots(step, x0, self._num_steps, save_steps)
        evals = self._num_steps
        if self.denoise:
            x = tweedie_denoise(sde, score, times[-1], x)
            evals += 1
        return x, traj, make_stats(self._num_steps, 0, evals)
