import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._checks import static_number
from .._custom_types import Array, Data, Float, PRNGKeyArray
from .._numerics import normal
from .._sde import AbstractSDE
from ._base import (
    AbstractSampler,
    check_init_uniform,
    check_num,
    check_positive,
    initial_state,
    make_stats,
    nearest_steps,
    resolve_eps,
    scan_with_snapshots,
    ScoreFn,
    split2,
    Stats,
)


def langevin_step(score: ScoreFn, t, x: Data, step_size, key: PRNGKeyArray) -> Data:
    r"""$x + \tfrac{\alpha}{2} s(t, x) + \sqrt{\alpha}\,z$, $z \sim \mathcal N(0, I)$."""
    z = normal(key, x.shape, x.dtype)
    step_size = jnp.asarray(step_size, x.dtype)
    return x + 0.5 * step_size * score(t, x) + jnp.sqrt(step_size) * z


class Langevin(AbstractSampler):
    r"""Unadjusted Langevin dynamics with a fixed score $s(t_\ast, \cdot)$:

    $$x_{k+1} = x_k + \tfrac{\epsilon}{2} s(t_\ast, x_k) + \sqrt{\epsilon}\,z_k .$$

    This is the step of the NCSN toy-example tutorial and of Song & Ermon (2019). Kasim's
    tutorial writes $x + \epsilon' s + \sqrt{2\epsilon'} z$: the same step with
    $\epsilon = 2\epsilon'$. With a time-free score (Kasim's tutorial) $t_\ast$ is
    ignored; with a time-dependent score it targets $p_{t_\ast}$, by default $p_\epsilon$
    (≈ the data distribution).

    Langevin needs the score everywhere the chain goes, and it cannot move mass between
    modes separated by low density: on a mixture it keeps roughly the initial split of
    the mass (the NCSN toy-example tutorial). Use
    [`AnnealedLangevin`][scoresde.AnnealedLangevin] there.

    **Arguments:**

    - `num_steps`: number of steps.
    - `step_size`: $\epsilon > 0$.
    - `t`: the time the score is evaluated at (default: the SDE's `default_eps`).
    - `init_uniform`: start uniform on the box `[low, high]^d` (as the Kasim and NCSN
      tutorials do) instead of from the SDE's prior.
    """

    num_steps: int = static_number()
    step_size: float = static_number()
    t: float | None = static_number(default=None)
    init_uniform: tuple[float, float] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_num("num_steps", self.num_steps)
        check_positive("step_size", self.step_size)
        check_init_uniform(self.init_uniform)

    def check(self, sde: AbstractSDE) -> None:
        if self.t is not None and not 0 <= self.t <= float(sde.T):
            raise ValueError(f"`t` must lie in [0, T] = [0, {float(sde.T)}], got {self.t}.")

    def _t(self, sde: AbstractSDE) -> float:
        return resolve_eps(sde, None) if self.t is None else self.t

    def clock(self, sde: AbstractSDE) -> Float[Array, " n+1"]:
        """The step count (0 = the initial state): Langevin does not move in diffusion time."""
        return jnp.arange(self.num_steps + 1, dtype=jnp.result_type(float))

    def sample_one(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        key: PRNGKeyArray,
        save_ts: Float[Array, " k"] | None,
        initial: Data | None = None,
    ) -> tuple[Data, Float[Array, "k *data"] | None, Stats]:
        key_init, key_steps = split2(key)
        x0 = initial_state(sde, key_init, data_shape, self.init_uniform, initial)
        t = jnp.asarray(self._t(sde))

        def step(i, x):
            return langevin_step(score, t, x, self.step_size, jr.fold_in(key_steps, i))

        save_steps = None if save_ts is None else nearest_steps(self.clock(sde), save_ts)
        x, traj = scan_with_snapshots(step, x0, self.num_steps, save_steps)
        return x, traj, make_stats(self.num_steps, 0, self.num_steps)
