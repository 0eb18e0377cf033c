"""A Brownian path for fixed-step solves, as cheap as drawing increments in a `lax.scan`."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Array, PRNGKeyArray, Scalar, ScalarLike
from .._numerics import normal


class GridBrownianPath(dfx.AbstractBrownianPath):
    r"""Brownian motion sampled on a fixed time grid $t_0 < t_1 < \dots < t_n$.

    The increment over step $k$ is $W(t_{k+1}) - W(t_k) = \sqrt{t_{k+1} - t_k}\,z_k$ with
    $z_k \sim \mathcal N(0, I)$ drawn from `jax.random.fold_in(key, k)`: the increments are
    independent, exactly distributed, reproducible from `key`, and drawn only when a solver
    asks for them (no array of all increments is held, so memory does not grow with the
    number of steps). With `levy_area=diffrax.SpaceTimeLevyArea`, each step also carries its
    space-time Lévy area $H_k \sim \mathcal N(0, \Delta t/12)$, independent of $z_k$, as the
    stochastic Runge–Kutta solvers (SRA1, ShARK, ...) need.

    It has the same semantics as `diffrax.VirtualBrownianTree` for every query a
    fixed-step solve on the same grid makes, $[t_k, t_{k+1}]$, at the cost of one
    normal draw instead of a walk down a tree. Any other query (a point value, an interval
    off the grid or spanning several steps) raises an error at run time: use
    `VirtualBrownianTree` for adaptive step sizes.

    **Arguments:**

    - `ts`: the grid, strictly increasing, shape `(n + 1,)`.
    - `shape`: the shape of $W$ (one sample), or a `jax.ShapeDtypeStruct`.
    - `key`: the PRNG key the increments are drawn from.
    - `levy_area`: `diffrax.BrownianIncrement` (default) or `diffrax.SpaceTimeLevyArea`.
    - `check_queries`: raise on a query that is not one grid step (default). A caller that
      solves with `diffrax.StepTo` on this very grid may turn it off: then no query can be
      off the grid, and each step saves an `eqx.error_if` (6 % of a fixed-step reverse-SDE
      solve on an H100, `benchmarks/call_overhead.py`).
    """

    ts: Array
    key: PRNGKeyArray
    shape: jax.ShapeDtypeStruct = eqx.field(static=True)
    levy_area: type[dfx.BrownianIncrement | dfx.SpaceTimeLevyArea] = eqx.field(static=True)
    check_queries: bool = eqx.field(static=True)

    def __init__(
        self,
        ts: Array,
        shape: tuple[int, ...] | jax.ShapeDtypeStruct,
        key: PRNGKeyArray,
        levy_area: type[dfx.BrownianIncrement | dfx.SpaceTimeLevyArea] = dfx.BrownianIncrement,
        *,
        check_queries: bool = True,
    ):
        ts = jnp.asarray(ts)
        if ts.ndim != 1 or ts.shape[0] < 2:
            raise ValueError(f"`ts` must be a 1-D grid of at least 2 times, got shape {ts.shape}.")
        if levy_area not in (dfx.BrownianIncrement, dfx.SpaceTimeLevyArea):
            raise ValueError(
                "`levy_area` must be diffrax.BrownianIncrement or diffrax.SpaceTimeLevyArea, "
                f"got {levy_area}."
            )
        if isinstance(shape, tuple):
            shape = jax.ShapeDtypeStruct(shape, jnp.result_type(float))
        self.ts = ts
        self.key = key
        self.shape = shape
        self.levy_area = levy_area
        self.check_queries = check_queries

    @property
    def t0(self) -> Scalar:
        return self.ts[0]

    @property
    def t1(self) -> Scalar:
        return self.ts[-1]

    def step_index(self, t0: ScalarLike, t1: ScalarLike) -> Array:
        """The step $k$ with $[t_k, t_{k+1}] = [t0, t1]$; an error if there is none."""
        n = self.ts.shape[0] - 1
        # One vectorised comparison with the grid: the default binary search is a loop of
        # log2(n) small steps, which on a GPU cost more than the whole Euler step around it.
        # The comparison is O(n) a step, so very long grids keep the binary search.
        method = "compare_all" if n <= 4096 else "scan"
        k = jnp.clip(jnp.searchsorted(self.ts, 0.5 * (t0 + t1), method=method) - 1, 0, n - 1)
        if not self.check_queries:
            return k
        lo, hi = self.ts[k], self.ts[k + 1]
        # Diffrax hands back the grid's own values (negated when solving backwards, which is
        # exact); allow a few ulps of the grid's scale in case the grid was recomputed.
        scale = jnp.maximum(jnp.abs(self.ts[0]), jnp.abs(self.ts[-1]))
        tol = 8 * jnp.finfo(self.ts.dtype).eps * scale
        off_grid = (jnp.abs(t0 - lo) > tol) | (jnp.abs(t1 - hi) > tol)
        return eqx.error_if(
            k,
            off_grid,
            "GridBrownianPath was asked for an increment that is not one step of its grid. "
            "Solve with diffrax.StepTo(ts) on the same grid, or use "
            "diffrax.VirtualBrownianTree (needed for adaptive step sizes).",
        )

    def increment(self, k: ScalarLike) -> Array:
        r"""$W(t_{k+1}) - W(t_k)$ for step `k`."""
        dt = self.ts[k + 1] - self.ts[k]
        z = normal(jr.fold_in(self.key, k), self.shape.shape, self.shape.dtype)
        return jnp.sqrt(dt).astype(self.shape.dtype) * z

    @eqx.filter_jit
    def evaluate(
        self,
        t0: ScalarLike,
        t1: ScalarLike | None = None,
        left: bool = True,
        use_levy: bool = False,
    ):
        del left
        if t1 is None:
            raise ValueError(
                "GridBrownianPath gives increments W(t1) - W(t0) over grid steps, not point "
                "values; use diffrax.VirtualBrownianTree to evaluate W(t)."
            )
        k = self.step_index(t0, t1)
        w = self.increment(k)
        if not use_levy:
            return w
        dt = (self.ts[k + 1] - self.ts[k]).astype(self.shape.dtype)
        if self.levy_area is dfx.SpaceTimeLevyArea:
            key_h = jr.fold_in(jr.fold_in(self.key, k), 1)
            h = jnp.sqrt(dt / 12) * normal(key_h, self.shape.shape, self.shape.dtype)
            return dfx.SpaceTimeLevyArea(dt=dt, W=w, H=h)
        return dfx.BrownianIncrement(dt=dt, W=w)
