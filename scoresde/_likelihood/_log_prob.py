"""Exact log-likelihoods through the probability-flow ODE (Song et al., 2021, §4.3)."""

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
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
from .._custom_types import Array, Float, FloatArrayLike, Int, PRNGKeyArray, Real
from .._sampler._diffrax_sampler import check_solve, solution_stats
from .._sde import AbstractSDE, warn_prior_mismatch
from .._sde._base import check_score_sde
from .._sharding import batch_sharding, Devices, fold_in_keys, map_batch, resolve_mesh
from .._typecheck import typechecked
from ._divergence import AbstractDivergence, ExactDivergence, HutchinsonDivergence


EXACT_MAX_DIM = 64
"""`log_prob` uses the exact trace at most up to this many dimensions per sample."""

EXACT_MAX_FLOPS = 1e8
"""... and only while $d \times$ (FLOPs of one score evaluation) stays under this: the exact
trace costs $d$ Jacobian-vector products per evaluation, each about one score's cost."""


class LogProbResult(eqx.Module):
    """What [`log_prob`][scoresde.log_prob] returns with `return_info=True`.

    - `log_prob`: shape `(n,)`, $\\log p_\\epsilon(x)$ in nats.
    - `prior_log_prob`: shape `(n,)`, the prior's log-density at the ODE's end point $x_T$.
    - `delta`: shape `(n,)`, $\\int_\\epsilon^T \\nabla\\cdot\\tilde f\\,\\mathrm dt$, so
      `log_prob = prior_log_prob + delta`.
    - `latent`: shape `(n, *data)`, $x_T$, where the ODE carries each point (the flow's
      encoding of it).
    - `stats`: per-sample `num_steps`, `num_rejected_steps` and `num_score_evals`
      (evaluations of the score, each with its $d$ or $M$ Jacobian-vector products).
    """

    log_prob: Float[Array, " n"]
    prior_log_prob: Float[Array, " n"]
    delta: Float[Array, " n"]
    latent: Float[Array, "n *data"]
    stats: dict[str, Int[Array, " n"]]


def _check_x(x) -> None:
    if np.ndim(x) < 2:
        raise ValueError(
            f"`x` must have shape (n, *data_shape) with a leading batch axis, got {np.shape(x)}."
        )
    check_nonempty("x", x, "a log-density")
    check_finite_rows("x", x, "a log-density needs finite points")


def score_flops(sde, score, x_row, condition) -> float | None:
    """XLA's FLOP count of one score evaluation on one row (None if XLA gives none)."""
    cond = one_condition(condition)
    f = bind(score, cond) if cond is not None else score
    t = jnp.asarray(0.5 * float(sde.T), x_row.dtype)
    try:
        params, static = eqx.partition(f, eqx.is_array)
        one = lambda p, x: eqx.combine(p, static)(t, x)  # noqa: E731
        cost = jax.jit(one).lower(params, x_row).cost_analysis()
    except Exception:  # a cost model is an optimisation; never fail the call for it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = None if not isinstance(cost, dict) else cost.get("flops")
    return float(flops) if flops is not None and flops > 0 else None


def auto_divergence(sde, score, x_row, condition=None) -> AbstractDivergence:
    r"""The divergence `log_prob` uses by default for samples like `x_row`: the exact trace
    when $d \le 64$ and $d \cdot F \le 10^8$, $F$ the FLOPs of one score evaluation
    (XLA's cost analysis); else Hutchinson with one Rademacher probe."""
    dim = int(np.prod(x_row.shape))
    if dim > EXACT_MAX_DIM:
        return HutchinsonDivergence()
    flops = score_flops(sde, score, x_row, condition)
    if flops is not None and dim * flops > EXACT_MAX_FLOPS:
        return HutchinsonDivergence()
    return ExactDivergence()


def _resolve_divergence(divergence, data_shape, key, auto=None) -> AbstractDivergence:
    if divergence is None:
        dim = int(np.prod(data_shape))
        if auto is not None:
            divergence = auto()
        else:
            divergence = ExactDivergence() if dim <= EXACT_MAX_DIM else HutchinsonDivergence()
    if not isinstance(divergence, AbstractDivergence):
        raise TypeError(
            f"`divergence` must be ExactDivergence() or HutchinsonDivergence(...), got "
            f"{type(divergence).__name__}."
        )
    if divergence.needs_key and key is None:
        raise ValueError(
            f"{type(divergence).__name__} draws random probes: pass `key=`, or use "
            "divergence=ExactDivergence() (exact, costs one Jacobian-vector product per "
            "dimension)."
        )
    return divergence


@eqx.filter_jit
def _log_prob_jit(
    sde,
    score,
    x,
    key,
    divergence,
    solver,
    controller,
    num_steps,
    eps,
    max_steps,
    mesh,
    chunk,
    condition,
    offset=0,
):
    # Runs only when tracing: a cached call pays nothing for the check.
    check_score(score, x.shape[1:], "one row of `x`", t=sde.T, condition=one_condition(condition))
    keys = fold_in_keys(key, x.shape[0], mesh, offset)

    def one(x, k, c, sde, score, divergence, solver, controller):
        score = bind(score, c)
        probes = divergence.probes(k, x)

        def field(t, y, args):
            x, _ = y
            drift = lambda z: sde.probability_flow_drift(score, t, z)
            fx, div = divergence(drift, x, probes)
            return fx, div.astype(x.dtype)

        if num_steps is None:
            step_control, dt0 = controller, 0.01 * (sde.T - eps)
        else:
            step_control, dt0 = dfx.StepTo(ts=jnp.linspace(eps, sde.T, num_steps + 1)), None
        sol = dfx.diffeqsolve(
            dfx.ODETerm(field),
            solver,
            t0=eps,
            t1=sde.T,
            dt0=dt0,
            y0=(x, jnp.zeros((), x.dtype)),
            stepsize_controller=step_control,
            max_steps=max_steps if num_steps is None else num_steps,
            throw=num_steps is not None,
        )
        ys = sol.ys
        if num_steps is None:
            ys = check_solve(sol, ys, score(eps, x), "log_prob()")
        x_T, delta = ys[0][-1], ys[1][-1]
        prior = sde.prior_log_prob(x_T)
        stats = solution_stats(sol, solver, is_sde=False, extra=int(num_steps is None))
        return prior + delta, prior, delta, x_T, stats

    def block(batch, *args):
        x, keys, cs = batch
        lp, *rest = jax.vmap(lambda x, k, c: one(x, k, c, *args))(x, keys, cs)
        # Checked inside each device's program, so the result stays sharded.
        lp = eqx.error_if(
            lp,
            ~jnp.all(jnp.isfinite(lp)),
            "log_prob(): a log-density is NaN or inf: the score returned a non-finite value, "
            "or the ODE solve failed (raise max_steps, loosen rtol/atol, or check eps).",
        )
        return lp, *rest

    args = (sde, score, divergence, solver, controller)
    lp, prior, delta, latent, stats = map_batch(
        block, (x, keys, condition), mesh=mesh, chunk_size=chunk, replicated_args=args
    )
    return LogProbResult(log_prob=lp, prior_log_prob=prior, delta=delta, latent=latent, stats=stats)


@typechecked
def log_prob(
    sde: AbstractSDE,
    score: Callable,
    x: FloatArrayLike,
    *,
    key: PRNGKeyArray | None = None,
    divergence: AbstractDivergence | None = None,
    solver: dfx.AbstractSolver = dfx.Tsit5(),
    stepsize_controller: dfx.AbstractAdaptiveStepSizeController = dfx.PIDController(
        rtol=1e-5, atol=1e-5
    ),
    num_steps: int | None = None,
    eps: float | None = None,
    max_steps: int = 4096,
    return_info: bool = False,
    devices: Devices = None,
    chunk_size: int | None = None,
    condition: Any = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> Float[Array, " n"] | LogProbResult:
    r"""The log-density of each row of `x` under the model, through the probability-flow
    ODE $\dot x = \tilde f(t, x) = f(t, x) - \tfrac12 g(t)^2 s(t, x)$, a continuous
    normalising flow (Song et al., 2021, §4.3; Chen et al., 2018):

    $$\log p_\epsilon(x) = \log p_T(x_T) + \int_\epsilon^T \nabla\cdot\tilde f(t, x_t)\,
    \mathrm dt,$$

    integrated from $x_\epsilon = x$ up to $T$ as one augmented Diffrax ODE in
    $(x_t, \int \nabla\cdot\tilde f)$, with $p_T$ the SDE's prior. The result is the density
    of $p_\epsilon$, the data perturbed to time `eps`; with the default `eps` it is the data
    density up to that tiny perturbation.

    Float64: call `jax.config.update("jax_enable_x64", True)` before building anything and
    pass float64 `x`; the solve then runs in float64 (tighten `rtol`/`atol` to match).

    **Arguments:**

    - `sde`, `score`: as for [`sample`][scoresde.sample].
    - `x`: points `(n, *data_shape)`, finite.
    - `key`: needed only for [`HutchinsonDivergence`][scoresde.HutchinsonDivergence];
      row $i$ uses `fold_in(key, i)`. When the default picks Hutchinson and no key is
      given, `jax.random.key(0)`.
    - `divergence`: [`ExactDivergence`][scoresde.ExactDivergence]`()` or
      [`HutchinsonDivergence`][scoresde.HutchinsonDivergence]`(num_probes, probe)`.
      Default: the exact trace when it is cheap, $d \le 64$ dimensions per sample AND
      $d \cdot F \le 10^8$, with $F$ the FLOPs of one score evaluation from XLA's cost
      analysis (the exact trace costs $d$ Jacobian-vector products, each about one score
      evaluation); else Hutchinson with one Rademacher probe. A 2-D MLP ($F \approx
      3\cdot10^5$) and a 64-D one get the exact trace; the default U-Net on 8x8 images
      ($F \approx 1.6\cdot10^7$, so $d F \approx 10^9$) gets Hutchinson.
    - `solver`: any Diffrax ODE solver (default `Tsit5()`).
    - `stepsize_controller`: default `PIDController(rtol=1e-5, atol=1e-5)`.
    - `num_steps`: fixed steps (uniform in $t$) instead of adaptive ones.
    - `eps`: the time of the density (default the SDE's `default_eps`).
    - `max_steps`: the adaptive solve's step budget.
    - `return_info`: return a [`LogProbResult`][scoresde.LogProbResult] with the prior
      term, the divergence integral and statistics.
    - `devices`, `chunk_size`: data parallelism over the rows of `x` and blocks per
      device, as for [`sample`][scoresde.sample].
    - `condition`: for a conditional score `score(t, x, c)`, one condition per row of `x`
      (a pytree with a leading axis of `n`): row $i$ gets $\log p_\epsilon(x_i \mid c_i)$.
    - `batch_size`: solve this many rows per jitted call, one call after another (the
      last batch padded, so one compilation serves all); row $i$'s result does not
      depend on it. Default: all rows in one call.
    - `progress`: show a tqdm bar over the batches (of `batch_size`, default 100 rows
      when `progress=True`).

    **Returns:** `Float[Array, "n"]` in nats, or a `LogProbResult`.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{song2021scorebased,
          title={Score-Based Generative Modeling through Stochastic Differential Equations},
          author={Song, Yang and Sohl-Dickstein, Jascha and Kingma, Diederik P and
                  Kumar, Abhishek and Ermon, Stefano and Poole, Ben},
          booktitle={ICLR}, year={2021}
        }
        ```
    """
    _check_x(x)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(float)
    eps = check_eps(sde, eps, "log_prob gives the density of p_eps, the data at time eps")
    warn_prior_mismatch(sde, float(jnp.mean(jnp.square(x))))
    check_callable(score)
    check_score_sde(sde, score, "log_prob()")
    condition = prepare_condition(score, condition, x.shape[0], "the number of rows of `x`")
    check_num("max_steps", max_steps)
    if num_steps is not None:
        check_num("num_steps", num_steps)
    if batch_size is not None:
        check_num("batch_size", batch_size)
    auto = lambda: auto_divergence(sde, score, x[0], condition)  # noqa: E731
    chosen = divergence is None
    divergence = _resolve_divergence(divergence, x.shape[1:], key if not chosen else 0, auto)
    key = jr.key(0) if key is None else key  # unused by the exact trace
    if chunk_size is not None:
        check_num("chunk_size", chunk_size)
    n = x.shape[0]
    if batch_size is None and progress:
        batch_size = min(n, 100)
    if batch_size is None or batch_size >= n:
        batches, size = [0], n
    else:
        batches, size = list(range(0, n, batch_size)), batch_size
    mesh = resolve_mesh(devices, size, "The number of rows of `x` (or `batch_size`)")
    from tqdm.auto import tqdm  # here, not at import: in Jupyter it warns without ipywidgets

    results = []
    for start in tqdm(batches, disable=not progress, unit="batch", desc="log_prob"):
        rows = jnp.arange(start, start + size).clip(max=n - 1)  # the last batch padded
        xb = x if size == n else x[rows]
        cb = condition if size == n else jax.tree.map(lambda c, r=rows: c[r], condition)
        if mesh is not None:
            xb = jax.device_put(xb, batch_sharding(mesh))
        with runtime_errors():
            out = jax.block_until_ready(
                _log_prob_jit(
                    sde,
                    score,
                    xb,
                    key,
                    divergence,
                    solver,
                    stepsize_controller,
                    num_steps,
                    eps,
                    max_steps,
                    mesh,
                    chunk_size,
                    cb,
                    jnp.asarray(start),
                )
            )
        results.append(out)
    if len(results) == 1:
        result = results[0]
    else:
        result = jax.tree.map(lambda *parts: jnp.concatenate(parts)[:n], *results)
    return result if return_info else result.log_prob


@typechecked
def bits_per_dim(
    sde: AbstractSDE,
    score: Callable,
    x: Real[Array, "n *data"] | Real[np.ndarray, "n *data"],
    *,
    key: PRNGKeyArray,
    num_bins: int = 256,
    data_range: tuple[float, float] = (0.0, 1.0),
    condition: Any = None,
    **kwargs,
) -> Float[Array, " n"]:
    r"""Bits per dimension of discrete data (e.g. 8-bit images) under the model, with
    uniform dequantisation made explicit.

    Each integer $x \in \{0, \dots, K-1\}^D$ is dequantised to
    $y = a + (b - a)(x + u)/K$, $u \sim U[0, 1)^D$, where $[a, b]$ = `data_range` is the
    range the model was trained on. Then $\log P(x) \ge \mathbb E_u[\log p(y)] +
    D\log\frac{b - a}{K}$ (Theis et al., 2016), and

    $$\text{bits/dim} = -\frac{\log p(y)}{D\ln 2} - \log_2\frac{b - a}{K},$$

    one draw of $u$ per row (average several keys for a tighter estimate). For 8-bit data
    modelled on $[0, 1]$ the offset is $+\log_2 256 = 8$ bits per dimension; on $[-1, 1]$,
    $+7$.

    **Arguments:**

    - `x`: integers in $[0, K)$, shape `(n, *data_shape)` (any integer or float dtype).
    - `key`: for the dequantisation noise (and Hutchinson probes), row $i$ from
      `fold_in(key, i)`.
    - `num_bins`: $K$ (256 for 8-bit data).
    - `data_range`: $(a, b)$, the range of the model's data.
    - `condition`: for a conditional score, one condition per row of `x`.
    - `kwargs`: passed on to [`log_prob`][scoresde.log_prob].

    **Returns:**

    Bits per dimension of each row, shape `(n,)`.
    """
    check_num("num_bins", num_bins, minimum=2)
    lo, hi = data_range
    if not hi > lo:
        raise ValueError(f"`data_range` must be (low, high) with high > low, got {data_range}.")
    values = np.asarray(x)
    if values.ndim < 2:
        raise ValueError(f"`x` must have shape (n, *data_shape), got {values.shape}.")
    check_nonempty("x", values, "bits per dimension")
    if np.any(values != np.round(values)) or values.min() < 0 or values.max() >= num_bins:
        raise ValueError(
            f"`x` must hold integers in [0, {num_bins}) (the discrete data before dequantisation)."
        )
    key_u, key_div = jr.split(key)
    n, dim = values.shape[0], int(np.prod(values.shape[1:]))
    u = jax.vmap(lambda i: jr.uniform(jr.fold_in(key_u, i), values.shape[1:]))(jnp.arange(n))
    y = lo + (hi - lo) * (jnp.asarray(values, u.dtype) + u) / num_bins
    lp = log_prob(sde, score, y, key=key_div, condition=condition, **kwargs)
    return -lp / (dim * jnp.log(2.0)) - jnp.log2((hi - lo) / num_bins)
