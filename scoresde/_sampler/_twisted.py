from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import static_number
from .._custom_types import Array, Data, Float, PRNGKeyArray
from .._guidance import AbstractPosteriorGuidance, DPS, LinearObservation, TMPD
from .._numerics import normal
from .._sde import AbstractLinearSDE, AbstractSDE
from ._base import (
    AbstractConditioningSampler,
    check_eps,
    check_num,
    make_stats,
    resolve_eps,
    ScoreFn,
    Stats,
)
from ._grid import AbstractTimeGrid, check_grid, UniformGrid


def _systematic_resample(key: PRNGKeyArray, log_weights: Float[Array, " K"]) -> Array:
    """Particle indices, systematic resampling (one uniform draw for all K)."""
    k = log_weights.shape[0]
    cdf = jnp.cumsum(jax.nn.softmax(log_weights))
    u = (jr.uniform(key, ()) + jnp.arange(k)) / k
    return jnp.minimum(jnp.searchsorted(cdf, u), k - 1)


def _ess(log_weights: Float[Array, " K"]) -> Array:
    w = jax.nn.softmax(log_weights)
    return 1.0 / jnp.sum(w**2)


class TwistedDiffusionSampler(AbstractConditioningSampler):
    r"""The twisted diffusion sampler (TDS; Wu et al., 2023): sequential Monte Carlo over
    the reverse diffusion with `num_particles` particles per output sample, exact for
    the posterior $p(x \mid y)$ of the model's prior as the number of particles grows.

    It takes an UNCONDITIONAL score and one observation $y$ per sample
    (`sample(sde, score, tds, shape, key=key, condition=Y)`). With twisting functions
    $\tilde p_t(y \mid x_t)$ (Gaussian approximations of the likelihood of a noisy
    sample), each of the $K$ particles

    1. starts from the prior at $T$ with weight $\tilde p_T(y \mid x_T)$;
    2. steps from $t$ to $t' = t - \Delta$ with the twisted proposal, the Euler–Maruyama
       step of the reverse SDE with the guided score
       $s + \nabla \log \tilde p_t(y \mid x_t)$:
       $x' \sim q = \mathcal N(\mu_t(x) + g^2\Delta\,\nabla\log\tilde p_t,\; g^2\Delta\, I)$,
       with $\mu_t(x) = x - [f - g^2 s]\Delta$ the unguided step's mean;
    3. multiplies its weight by $\dfrac{\mathcal N(x'; \mu_t(x), g^2\Delta I)\,
       \tilde p_{t'}(y \mid x')}{q(x' \mid x)\,\tilde p_t(y \mid x)}$, where at the last
       step the twist is replaced by the exact likelihood $\mathcal N(y; A x',
       \sigma_y^2 I)$;
    4. is resampled (systematic resampling) when the effective sample size falls below
       `ess_threshold * K`.

    The product of the weights telescopes to $p(y \mid x_0)$ whatever the twist, so the
    weighted particles target the posterior of the discretised model; the twist decides
    only the variance. One particle is returned per sample, drawn by the final weights.

    **The twist.** `"tmpd"` (default) is TMPD's covariance-corrected
    $\mathcal N(y;\, A\hat x_0,\, \sigma_y^2 I + A C_t A^\top)$ with
    $C_t = \frac{s^2}{m}\partial\hat x_0/\partial x_t$ (held fixed in its gradient);
    `"dps"` is the paper's $\mathcal N(y;\, A\hat x_0,\, \sigma_y^2 I)$, which ignores the
    spread of $p(x_0 \mid x_t)$ and degenerates (a handful of effective particles) on
    multimodal posteriors.

    **Statistics** (`return_info=True`): besides the counts, `min_ess` (the smallest
    effective sample size over the run), `num_resamples`, and `log_normaliser`, the
    estimate of $\log p(y)$ under the model. `num_score_evals` counts score evaluations
    per output sample ($K$ per step and one more at $T$), each with its vector–Jacobian
    product (and, for `"tmpd"`, $m$ more, one per observed entry).

    Sample $i$ depends only on the key, $i$ and $y_i$; its particles stay on one device.
    On a CPU with few cores keep samples × particles per block to about a thousand with
    `sample(..., chunk_size=)`: jaxlib's batched LAPACK kernels (the triangular solves of a
    mixture's score) can deadlock XLA's thread pool on 2 cores with a few thousand
    particles in one call.
    No trajectories (`saveat`): particles are resampled, so a path is not one particle's.

    **Arguments:**

    - `obs`: the [`LinearObservation`][scoresde.LinearObservation]; needs
      `noise_std > 0` (the final weight is the likelihood).
    - `num_particles`: $K \ge 1$ ($K = 1$ is the guided sampler without correction).
    - `num_steps`: reverse steps, on `grid`.
    - `twist`: `"tmpd"` or `"dps"`.
    - `ess_threshold`: resample when the ESS falls below this fraction of $K$.
    - `grid`, `eps`: as for [`ReverseSDE`][scoresde.ReverseSDE].

    ??? cite "Reference"

        ```bibtex
        @inproceedings{wu2023practical,
          title={Practical and Asymptotically Exact Conditional Sampling in Diffusion
                 Models},
          author={Wu, Luhuan and Trippe, Brian L. and Naesseth, Christian A. and
                  Blei, David M. and Cunningham, John P.},
          booktitle={NeurIPS}, year={2023}
        }
        ```
    """

    obs: LinearObservation
    num_particles: int = static_number(default=16)
    num_steps: int = static_number(default=200)
    twist: Literal["tmpd", "dps"] = eqx.field(static=True, default="tmpd")
    ess_threshold: float = static_number(default=0.5)
    grid: AbstractTimeGrid = UniformGrid()
    eps: float | None = static_number(default=None)

    def __check_init__(self):
        if not isinstance(self.obs, LinearObservation):
            raise TypeError(f"`obs` must be a LinearObservation, got {type(self.obs).__name__}.")
        self.obs.require_noise("TwistedDiffusionSampler")
        check_num("num_particles", self.num_particles)
        check_num("num_steps", self.num_steps)
        if self.twist not in ("tmpd", "dps"):
            raise ValueError(f"`twist` must be 'tmpd' or 'dps', got {self.twist!r}.")
        if not 0 <= self.ess_threshold <= 1:
            raise ValueError(f"`ess_threshold` must lie in [0, 1], got {self.ess_threshold}.")

    def check(self, sde: AbstractSDE) -> None:
        if not isinstance(sde, AbstractLinearSDE):
            raise TypeError("TwistedDiffusionSampler needs a linear SDE (Tweedie's denoiser).")
        check_eps(sde, self.eps)
        check_grid(self.grid, sde, self.num_steps, resolve_eps(sde, self.eps))

    def check_condition(self, data_shape, condition) -> None:
        if not isinstance(condition, jax.ShapeDtypeStruct):
            raise ValueError("`condition` must be one array of observations, shape (n, *y).")
        self.obs.check(data_shape, condition.shape)

    def clock(self, sde: AbstractSDE) -> Float[Array, " n+1"]:
        return self.grid.times(sde, self.num_steps, resolve_eps(sde, self.eps))

    def save_times(self, sde, num):
        raise ValueError(
            "TwistedDiffusionSampler records no trajectories (`saveat`): its particles are "
            "resampled, so no path belongs to one particle."
        )

    snap_save_times = save_times

    def _guidance(self, sde, score) -> AbstractPosteriorGuidance:
        return TMPD(sde, score, self.obs) if self.twist == "tmpd" else DPS(sde, score, self.obs)

    def sample_given(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        key: PRNGKeyArray,
        save_ts: Float[Array, " k"] | None,
        condition: Data,
        initial: Data | None = None,
    ) -> tuple[Data, None, Stats]:
        assert isinstance(sde, AbstractLinearSDE)
        y, k, n = condition, self.num_particles, self.num_steps
        ts = self.clock(sde)
        guide = self._guidance(sde, score)
        twists = jax.vmap(lambda t, x: guide.likelihood(t, x, y), in_axes=(None, 0))
        exact = jax.vmap(lambda x: self.obs.log_likelihood(x, y))
        key_init, key_steps, key_pick = jr.split(key, 3)
        if initial is None:
            x = jax.vmap(lambda kk: sde.prior_sample(kk, data_shape))(jr.split(key_init, k))
        else:  # every particle starts from the given state
            x = jnp.broadcast_to(initial, (k, *data_shape))
        log_twist, grad, s = twists(ts[0], x)
        flat = lambda a: a.reshape(k, -1)

        def step(carry, i):
            x, log_w, log_twist, grad, s, log_z, min_ess, resamples = carry
            key_r, key_z = jr.split(jr.fold_in(key_steps, i))
            ess = _ess(log_w)
            resample = ess < self.ess_threshold * k
            idx = jnp.where(resample, _systematic_resample(key_r, log_w), jnp.arange(k))
            log_z = log_z + jnp.where(resample, jax.nn.logsumexp(log_w) - jnp.log(k), 0.0)
            x, log_twist, grad, s = (a[idx] for a in (x, log_twist, grad, s))
            log_w = jnp.where(resample, jnp.zeros_like(log_w), log_w)

            t, t_next = ts[i], ts[i + 1]
            dt = (t - t_next).astype(x.dtype)
            g2 = (sde.diffusion(t) ** 2).astype(x.dtype)
            drift = jax.vmap(lambda xi: sde.drift(t, xi))(x)
            mean = x - (drift - g2 * s) * dt
            shift = g2 * dt * grad
            z = normal(key_z, x.shape, x.dtype)
            x_new = mean + shift + jnp.sqrt(g2 * dt) * z
            # log N(x'; mean, g2 dt) - log N(x'; mean + shift, g2 dt)
            noise = x_new - mean - shift
            log_ratio = (jnp.sum(flat(noise) ** 2, 1) - jnp.sum(flat(x_new - mean) ** 2, 1)) / (
                2 * g2 * dt
            )
            new_twist, new_grad, new_s = twists(t_next, x_new)
            target = jnp.where(i == n - 1, exact(x_new), new_twist)
            log_w = log_w + log_ratio + target - log_twist
            carry = (
                x_new,
                log_w,
                new_twist,
                new_grad,
                new_s,
                log_z,
                jnp.minimum(min_ess, ess),
                resamples + resample,
            )
            return carry, None

        init = (
            x,
            log_twist,
            log_twist,
            grad,
            s,
            jnp.zeros((), log_twist.dtype),
            jnp.asarray(k, log_twist.dtype),
            jnp.zeros((), jnp.int32),
        )
        (x, log_w, _, _, _, log_z, min_ess, resamples), _ = jax.lax.scan(step, init, jnp.arange(n))
        log_z = log_z + jax.nn.logsumexp(log_w) - jnp.log(k)
        pick = jr.categorical(key_pick, log_w)
        stats = make_stats(n, 0, k * (n + 1))
        stats.update(
            min_ess=jnp.minimum(min_ess, _ess(log_w)),
            num_resamples=resamples,
            log_normaliser=log_z,
        )
        return x[pick], None, stats
