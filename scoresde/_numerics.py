"""Numerics that stay correct and fast whatever XLA compiles around them."""

import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, DTypeLike


def noise_dtype(dtype: DTypeLike) -> DTypeLike:
    """The dtype Gaussian noise for data of `dtype` is drawn in: at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def normal(key, shape: tuple[int, ...], dtype: DTypeLike = float) -> Array:
    """Standard normal draws of `shape`, returned in `dtype` but drawn in at least float32.

    Why: `jax.random.normal` in bfloat16 turns 7 random mantissa bits into a draw, so it
    takes only 128 distinct values and never exceeds |z| ~ 2.9: the noise of a diffusion
    then has no tails. Drawn in float32 and rounded to the data's dtype, z has float32's
    distribution up to that dtype's rounding. For float32 and float64 the draw is the same
    as `jax.random.normal(key, shape, dtype)`, bit for bit."""
    return jr.normal(key, shape, noise_dtype(dtype)).astype(dtype)


def scalar_barrier(*scalars):
    """`scalars` unchanged, computed apart from whatever uses them.

    A per-step coefficient of the time alone (`exp` of an integrated β, a ratio of
    standard deviations) is otherwise free to be fused into the elementwise kernel over the
    batch, where XLA:CPU evaluates transcendental functions with its vectorised
    approximations, or kept as a scalar, evaluated by the scalar ones. The two can differ
    in the last bit, and which one a program gets depends on its surroundings (one device
    or a `shard_map` over several). Behind the barrier the coefficient is always the scalar
    computation, so sample $i$ stays bitwise the same on any number of devices.
    """
    out = lax.optimization_barrier(scalars)
    return out[0] if len(scalars) == 1 else out


def small_eigh(a: Array, sweeps: int = 8) -> tuple[Array, Array]:
    r"""Eigenvalues and eigenvectors (columns) of a small symmetric matrix, by cyclic
    Jacobi rotations in plain XLA operations: `sweeps` passes over the $m(m-1)/2$
    off-diagonal entries, each rotation zeroing one of them; convergence is quadratic, and
    8 sweeps reach float32 precision for $m \le 32$ (eigenvalues unsorted).

    Why not `jnp.linalg.eigh`: jaxlib's LAPACK kernels split a batch over XLA's
    intra-op thread pool and block a pool thread until the parts finish; on a 2-core CPU
    two such calls at once took both threads and waited on each other for ever (seen with
    thousands of TDS particles). Rotations are plain XLA operations. Above $m = 32$ they
    cost more than they save and LAPACK is used."""
    m = a.shape[0]
    if m > 32:
        return jnp.linalg.eigh(a)
    if m == 1:
        return a[0], jnp.ones((1, 1), a.dtype)
    rows, cols = (jnp.asarray(i) for i in np.triu_indices(m, 1))

    def rotate(i, carry):
        a, v = carry
        p, q = rows[i % rows.size], cols[i % rows.size]
        theta = 0.5 * jnp.arctan2(2 * a[p, q], a[q, q] - a[p, p])  # zeroes a[p, q]
        c, s = jnp.cos(theta), jnp.sin(theta)
        turn = lambda x, y: (c * x - s * y, s * x + c * y)
        a_p, a_q = turn(a[p], a[q])
        a = a.at[p].set(a_p).at[q].set(a_q)
        a_p, a_q = turn(a[:, p], a[:, q])
        a = a.at[:, p].set(a_p).at[:, q].set(a_q)
        v_p, v_q = turn(v[:, p], v[:, q])
        return a, v.at[:, p].set(v_p).at[:, q].set(v_q)

    a, v = lax.fori_loop(0, sweeps * rows.size, rotate, (a, jnp.eye(m, dtype=a.dtype)))
    return jnp.diagonal(a), v
