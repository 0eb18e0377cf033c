r"""Sample-quality metrics: compare generated samples with data, or with a known distribution.

Every metric takes batches with a leading sample axis, `(n, *data)`; the data axes are
flattened, so images work as well as vectors. They are jit-friendly (call them inside
`jax.jit`; array checks that need values, such as NaN, are then skipped) and memory-safe:
pairwise quantities are computed in blocks of rows of the first argument with `jax.lax.map`,
so memory grows like `block × m`, never `n × m` or `n × m × d`. Each block holds at most
about $2^{22}$ pair values unless `chunk_size` (the number of rows per block) says otherwise.

Squared distances are formed as $\|a\|^2 + \|b\|^2 - 2a\cdot b$ (a matrix product, at the
highest matmul precision) after centring both samples on a common point; where a distance
itself is returned ([`nearest_neighbour_distance`][scoresde.metrics.nearest_neighbour_distance])
it is recomputed directly from the difference of the two points found.
"""

import functools as ft

import jax
import jax.numpy as jnp
import numpy as np

from ._custom_types import Array, Float, PRNGKeyArray, Scalar, ScalarLike
from ._digits_metric import (
    digits_classifier as digits_classifier,
    digits_features as digits_features,
    digits_frechet_distance as digits_frechet_distance,
    digits_predictions as digits_predictions,
    frechet_distance as frechet_distance,
)
from ._numerics import normal
from ._typecheck import typechecked


__all__ = [
    "digits_classifier",
    "digits_features",
    "digits_frechet_distance",
    "digits_predictions",
    "energy_distance",
    "frechet_distance",
    "memorised_fraction",
    "mixture_weights",
    "mmd",
    "nearest_neighbour_distance",
    "sliced_wasserstein",
    "weight_error",
]

# Dimension names starting with `_` are not checked for consistency across arguments by
# jaxtyping: the checks below raise a ValueError that names both arguments instead.
_X = Float[Array, "n *_data"] | Float[np.ndarray, "n *_data"]
_Y = Float[Array, "m *_data"] | Float[np.ndarray, "m *_data"]
_Means = Float[Array, "k *_data"] | Float[np.ndarray, "k *_data"]
_Weights = Float[Array, " k"] | Float[np.ndarray, " k"]

_PAIRS_PER_BLOCK = 2**22
_MEDIAN_POINTS = 1024
_PRECISION = jax.lax.Precision.HIGHEST


# ------------------------------------------------------------------------------------------
# Validation


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _prepare(name: str, x, min_rows: int = 1) -> Array:
    """Checks one batch and flattens it to `(n, features)`."""
    if x.ndim < 1 or x.shape[0] < min_rows:
        raise ValueError(
            f"`{name}` must have shape (n, *data) with n >= {min_rows}, got {tuple(x.shape)}."
        )
    if _concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"`{name}` contains NaN or inf.")
    x = jnp.asarray(x)
    return x.reshape(x.shape[0], -1).astype(jnp.promote_types(x.dtype, jnp.float32))


def _same_data_shape(name_x: str, x, name_y: str, y) -> None:
    if tuple(x.shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(
            f"`{name_x}` and `{name_y}` must have the same data shape (all axes but the first): "
            f"got {tuple(x.shape)} and {tuple(y.shape)}."
        )


def _check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"`chunk_size` must be None or an int >= 1, got {chunk_size!r}.")


def _check_positive_scalar(name: str, value) -> None:
    if _concrete(value):
        v = np.asarray(value)
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"`{name}` must be finite and > 0, got {value!r}.")


def _block_rows(n: int, m: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        chunk_size = max(1, _PAIRS_PER_BLOCK // max(m, 1))
    return min(chunk_size, n)


# ------------------------------------------------------------------------------------------
# Blocked pairwise kernels. `a` is (n, f), `b` is (m, f); nothing n × m is materialised.


def _blocks(a: Array, block: int) -> tuple[Array, Array]:
    n = a.shape[0]
    num_blocks = -(-n // block)
    a = jnp.pad(a, ((0, num_blocks * block - n), (0, 0)))
    return a.reshape(num_blocks, block, a.shape[1]), jnp.arange(num_blocks) * block


def _sq_dists(a_block: Array, b: Array, b_sq: Array) -> Array:
    a_sq = jnp.sum(a_block**2, axis=-1)
    cross = jnp.matmul(a_block, b.T, precision=_PRECISION)
    return jnp.maximum(a_sq[:, None] + b_sq[None, :] - 2 * cross, 0.0)


def _pair_mean(a: Array, b: Array, fn, block: int, same: bool) -> Scalar:
    r"""Mean of `fn(‖a_i - b_j‖²)` over all pairs `(i, j)`, or over `i ≠ j` when `same`
    (`a` is `b`): the V-statistic of the cross term or the U-statistic of a within term."""
    n, m = a.shape[0], b.shape[0]
    a_blocks, starts = _blocks(a, block)
    b_sq = jnp.sum(b**2, axis=-1)
    cols = jnp.arange(m)

    def row_means(args):
        a_block, start = args
        rows = start + jnp.arange(block)
        values = fn(_sq_dists(a_block, b, b_sq))
        if same:
            values = jnp.where(rows[:, None] == cols[None, :], 0.0, values)
        return jnp.sum(values, axis=1) / (m - 1 if same else m)

    means = jax.lax.map(row_means, (a_blocks, starts)).reshape(-1)[:n]
    return jnp.mean(means)


def _safe_sqrt(sq: Array) -> Array:
    # Zero gradient (not inf) at coincident points; the value changes by at most 1e-15.
    return jnp.sqrt(jnp.maximum(sq, 1e-30))


@ft.partial(jax.jit, static_argnames=("block_x", "block_y"))
def _energy_distance(x, y, block_x, block_y):
    centre = 0.5 * (jnp.mean(x, axis=0) + jnp.mean(y, axis=0))
    x, y = x - centre, y - centre
    xy = _pair_mean(x, y, _safe_sqrt, block_x, same=False)
    xx = _pair_mean(x, x, _safe_sqrt, block_x, same=True)
    yy = _pair_mean(y, y, _safe_sqrt, block_y, same=True)
    return 2 * xy - xx - yy


@ft.partial(jax.jit, static_argnames=("block_x", "block_y"))
def _mmd(x, y, bandwidth, block_x, block_y):
    centre = 0.5 * (jnp.mean(x, axis=0) + jnp.mean(y, axis=0))
    x, y = x - centre, y - centre
    kernel = lambda sq: jnp.exp(-sq / (2 * bandwidth**2))
    xy = _pair_mean(x, y, kernel, block_x, same=False)
    xx = _pair_mean(x, x, kernel, block_x, same=True)
    yy = _pair_mean(y, y, kernel, block_y, same=True)
    return xx + yy - 2 * xy


@jax.jit
def _median_bandwidth(x, y):
    z = jnp.concatenate([x, y])
    num = z.shape[0]
    if num > _MEDIAN_POINTS:
        z = z[np.linspace(0, num - 1, _MEDIAN_POINTS).round().astype(np.int64)]
    z = z - jnp.mean(z, axis=0)
    sq = _sq_dists(z, z, jnp.sum(z**2, axis=-1))
    i, j = np.triu_indices(z.shape[0], k=1)
    return jnp.sqrt(jnp.median(sq[i, j]))


@ft.partial(jax.jit, static_argnames=("block",))
def _nearest(a, b, block):
    """Index of the nearest row of `b` for each row of `a`, and the exact distance to it."""
    n = a.shape[0]
    centre = jnp.mean(b, axis=0)
    a_c, b_c = a - centre, b - centre
    a_blocks, _ = _blocks(a_c, block)
    b_sq = jnp.sum(b_c**2, axis=-1)
    index = jax.lax.map(lambda blk: jnp.argmin(_sq_dists(blk, b_c, b_sq), axis=1), a_blocks)
    index = index.reshape(-1)[:n]
    return index, jnp.linalg.norm(a - b[index], axis=-1)


# ------------------------------------------------------------------------------------------
# Public metrics


@typechecked
def energy_distance(x: _X, y: _Y, *, chunk_size: int | None = None) -> Scalar:
    r"""The (squared) energy distance between the distributions of two samples.

    $$\mathcal E(P, Q) = 2\,\mathbb E\|X - Y\| - \mathbb E\|X - X'\| - \mathbb E\|Y - Y'\|,
    \qquad X, X' \sim P,\; Y, Y' \sim Q \text{ independent},$$

    which is $\ge 0$ and zero iff $P = Q$. The estimator is unbiased: the cross term is the
    mean over all $nm$ pairs, the within-sample terms are U-statistics (means over the
    $n(n-1)$ and $m(m-1)$ pairs $i \ne j$). So for two independent samples of the same
    distribution it has mean exactly zero (and can be slightly negative); its standard
    deviation then shrinks like $1/n$.

    **Arguments:**

    - `x`: shape `(n, *data)` with $n \ge 2$.
    - `y`: shape `(m, *data)` with $m \ge 2$, same data shape.
    - `chunk_size`: rows per block of the pairwise computation (memory `chunk_size × m`);
      by default about $2^{22}$ pairs per block.

    **Returns:**

    A scalar.

    ??? cite

        Székely, G. J. and Rizzo, M. L. (2013), *Energy statistics: A class of statistics
        based on distances*, Journal of Statistical Planning and Inference 143(8).
    """
    _same_data_shape("x", x, "y", y)
    _check_chunk_size(chunk_size)
    x, y = _prepare("x", x, 2), _prepare("y", y, 2)
    n, m = x.shape[0], y.shape[0]
    return _energy_distance(
        x, y, _block_rows(n, max(n, m), chunk_size), _block_rows(m, m, chunk_size)
    )


@typechecked
def mmd(
    x: _X, y: _Y, *, bandwidth: ScalarLike | None = None, chunk_size: int | None = None
) -> Scalar:
    r"""The unbiased estimate of the squared maximum mean discrepancy with a Gaussian kernel.

    With $k(a, b) = \exp\!\big(-\|a - b\|^2 / (2h^2)\big)$,

    $$\widehat{\mathrm{MMD}}{}^2_u = \frac{1}{n(n-1)}\sum_{i\ne j} k(x_i, x_j)
    + \frac{1}{m(m-1)}\sum_{i\ne j} k(y_i, y_j) - \frac{2}{nm}\sum_{i, j} k(x_i, y_j),$$

    whose expectation is $\mathrm{MMD}^2(P, Q)$ for a fixed $h$ (zero iff $P = Q$); it can
    be slightly negative.

    **Arguments:**

    - `x`: shape `(n, *data)` with $n \ge 2$.
    - `y`: shape `(m, *data)` with $m \ge 2$, same data shape.
    - `bandwidth`: $h > 0$. By default the median heuristic: the median of the pairwise
      Euclidean distances within the pooled sample $x \cup y$, computed on at most 1024
      points taken evenly spaced from the concatenation `[x, y]` (all of it when
      $n + m \le 1024$). Being data-dependent, it makes the estimate very slightly biased.
    - `chunk_size`: rows per block of the pairwise computation, as in
      [`energy_distance`][scoresde.metrics.energy_distance].

    **Returns:**

    A scalar.

    ??? cite

        Gretton, A. et al. (2012), *A Kernel Two-Sample Test*, JMLR 13, lemma 6.
    """
    _same_data_shape("x", x, "y", y)
    _check_chunk_size(chunk_size)
    x, y = _prepare("x", x, 2), _prepare("y", y, 2)
    if bandwidth is None:
        bandwidth = _median_bandwidth(x, y)
        if _concrete(bandwidth) and not float(bandwidth) > 0:
            raise ValueError(
                "The median heuristic gave bandwidth 0 (more than half the pairs of points "
                "coincide); pass `bandwidth` explicitly."
            )
    else:
        _check_positive_scalar("bandwidth", bandwidth)
    n, m = x.shape[0], y.shape[0]
    bandwidth = jnp.asarray(bandwidth, dtype=x.dtype)
    return _mmd(
        x, y, bandwidth, _block_rows(n, max(n, m), chunk_size), _block_rows(m, m, chunk_size)
    )


def _quantile_coupling(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights such that, for sorted `xs` (n) and `ys` (m),
    `sum(w * |xs[ix] - ys[iy]|**p)` is exactly W_p^p between the two empirical measures."""
    if n == m:
        idx = np.arange(n)
        return idx, idx, np.full(n, 1.0 / n)
    # Quantile levels in units of 1/(n m), in exact integer arithmetic: F^{-1}(u) = xs[i] for
    # u in (i/n, (i+1)/n], so on (b_{k-1}, b_k] it is xs[ceil(b_k / m) - 1].
    ends = np.unique(np.concatenate([m * np.arange(1, n + 1), n * np.arange(1, m + 1)]))
    ends = ends.astype(np.int64)
    ix = -(-ends // m) - 1
    iy = -(-ends // n) - 1
    widths = np.diff(ends, prepend=0) / (n * m)
    return ix, iy, widths


@ft.partial(jax.jit, static_argnames=("num_projections", "block"))
def _sliced_wasserstein(x, y, key, num_projections, p, block):
    theta = normal(key, (num_projections, x.shape[1]), x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=-1, keepdims=True)
    ix, iy, w = _quantile_coupling(x.shape[0], y.shape[0])
    w = jnp.asarray(w, dtype=x.dtype)
    theta_blocks, _ = _blocks(theta, block)  # padded directions are 0 and contribute 0

    def cost(th):
        xs = jnp.sort(jnp.matmul(x, th.T, precision=_PRECISION), axis=0)
        ys = jnp.sort(jnp.matmul(y, th.T, precision=_PRECISION), axis=0)
        return jnp.sum(w[:, None] * jnp.abs(xs[ix] - ys[iy]) ** p, axis=0)

    costs = jax.lax.map(cost, theta_blocks)
    return (jnp.sum(costs) / num_projections) ** (1 / p)


@typechecked
def sliced_wasserstein(
    x: _X, y: _Y, *, key: PRNGKeyArray, num_projections: int = 128, p: int | float = 2
) -> Scalar:
    r"""The sliced Wasserstein-$p$ distance between two samples, by Monte Carlo.

    $$\mathrm{SW}_p(P, Q) = \Big(\mathbb E_{\theta \sim U(S^{d-1})}\,
    W_p^p\big(\theta_\# P, \theta_\# Q\big)\Big)^{1/p},$$

    with `num_projections` directions $\theta$ drawn uniformly on the sphere (normalised
    Gaussians) from `key`. Each 1-D $W_p^p$ between the projected empirical measures is
    computed exactly from sorted projections: $\int_0^1 |F^{-1}(u) - G^{-1}(u)|^p\,du$ with
    the step quantile functions, which for $n = m$ is the mean of $|x_{(i)} - y_{(i)}|^p$
    and otherwise runs over the merged grid of levels $i/n$ and $j/m$.

    For a pure shift $Q = P(\cdot - \mu)$, every projection gives $W_p = |\theta\cdot\mu|$,
    so $\mathrm{SW}_2^2 = \mathbb E(\theta\cdot\mu)^2 = \|\mu\|^2/d$.

    **Arguments:**

    - `x`: shape `(n, *data)`.
    - `y`: shape `(m, *data)`, same data shape.
    - `key`: a JAX PRNG key for the directions.
    - `num_projections`: the number of directions; the Monte Carlo error shrinks like
      `num_projections ** -0.5`.
    - `p`: the order, $p \ge 1$.

    **Returns:**

    A scalar, $\mathrm{SW}_p$ (not its $p$-th power).

    ??? cite

        Bonneel, N. et al. (2015), *Sliced and Radon Wasserstein Barycenters of Measures*,
        Journal of Mathematical Imaging and Vision 51.
    """
    _same_data_shape("x", x, "y", y)
    if isinstance(num_projections, bool) or num_projections < 1:
        raise ValueError(f"`num_projections` must be an int >= 1, got {num_projections!r}.")
    if isinstance(p, bool) or not (np.isfinite(p) and p >= 1):
        raise ValueError(f"`p` must be a finite number >= 1, got {p!r}.")
    x, y = _prepare("x", x), _prepare("y", y)
    # Each block of directions holds (n + m) × block projections.
    block = _block_rows(num_projections, x.shape[0] + y.shape[0], None)
    p = jnp.asarray(p, dtype=x.dtype)
    return _sliced_wasserstein(x, y, key, num_projections, p, block)


def _check_means(samples, means) -> None:
    _same_data_shape("samples", samples, "means", means)


@typechecked
def mixture_weights(samples: _X, means: _Means) -> Float[Array, " k"]:
    r"""The fraction of samples nearest (in Euclidean distance) to each mean.

    For a mixture with well-separated modes this estimates the mode weights; it is how the
    0.95/0.05 mixture of the NCSN toy example (Song & Ermon, 2019) is scored.

    **Arguments:**

    - `samples`: shape `(n, *data)`.
    - `means`: the component means, shape `(k, *data)`.

    **Returns:**

    Shape `(k,)`: for each component, the fraction of samples whose nearest mean it is
    (ties go to the lowest index). The entries sum to 1.
    """
    _check_means(samples, means)
    samples, means = _prepare("samples", samples), _prepare("means", means)
    index, _ = _nearest(samples, means, _block_rows(samples.shape[0], means.shape[0], None))
    counts = jnp.bincount(index, length=means.shape[0])
    return counts.astype(samples.dtype) / samples.shape[0]


@typechecked
def weight_error(samples: _X, means: _Means, weights: _Weights) -> Scalar:
    r"""The largest error in the mode weights: $\max_k |\hat w_k - w_k|$, with $\hat w$ from
    [`mixture_weights`][scoresde.metrics.mixture_weights].

    **Arguments:**

    - `samples`: shape `(n, *data)`.
    - `means`: the component means, shape `(k, *data)`.
    - `weights`: the true weights, shape `(k,)`.

    **Returns:**

    A scalar in $[0, 1]$.
    """
    if _concrete(weights) and not np.all(np.isfinite(np.asarray(weights))):
        raise ValueError("`weights` contains NaN or inf.")
    estimate = mixture_weights(samples, means)
    return jnp.max(jnp.abs(estimate - jnp.asarray(weights, dtype=estimate.dtype)))


@typechecked
def nearest_neighbour_distance(
    samples: _X, train: _Y, *, chunk_size: int | None = None
) -> Float[Array, " n"]:
    r"""The Euclidean distance from each sample to its nearest training point.

    $$d_i = \min_j \|x_i - x^{\mathrm{train}}_j\|.$$

    A generative model that memorises (as the exact score of the empirical measure does,
    see the SGM-from-scratch tutorial) has $d_i \approx 0$; one that generalises has $d_i$
    comparable to the distances between training points.

    **Arguments:**

    - `samples`: shape `(n, *data)`.
    - `train`: shape `(m, *data)`, same data shape.
    - `chunk_size`: rows of `samples` per block (memory `chunk_size × m`).

    **Returns:**

    Shape `(n,)`. The neighbour is found from the expanded squared distances; the distance
    to it is then recomputed as $\|x_i - x_j\|$, so a sample equal to a training point gives
    exactly 0.
    """
    _same_data_shape("samples", samples, "train", train)
    _check_chunk_size(chunk_size)
    samples, train = _prepare("samples", samples), _prepare("train", train)
    block = _block_rows(samples.shape[0], train.shape[0], chunk_size)
    return _nearest(samples, train, block)[1]


@typechecked
def memorised_fraction(
    samples: _X, train: _Y, *, radius: ScalarLike, chunk_size: int | None = None
) -> Scalar:
    r"""The fraction of samples within `radius` of some training point:
    $\frac1n \#\{i : d_i \le r\}$ with $d_i$ from
    [`nearest_neighbour_distance`][scoresde.metrics.nearest_neighbour_distance].

    **Arguments:**

    - `samples`: shape `(n, *data)`.
    - `train`: shape `(m, *data)`, same data shape.
    - `radius`: $r > 0$, in the units of the data.
    - `chunk_size`: as in `nearest_neighbour_distance`.

    **Returns:**

    A scalar in $[0, 1]$.
    """
    _check_positive_scalar("radius", radius)
    distance = nearest_neighbour_distance(samples, train, chunk_size=chunk_size)
    return jnp.mean(distance <= radius, dtype=distance.dtype)
