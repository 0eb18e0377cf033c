import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.stats

from scoresde import metrics


def _pairwise(a, b):
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))


def _energy_reference(x, y):
    n, m = len(x), len(y)
    xx, yy = _pairwise(x, x), _pairwise(y, y)
    return 2 * _pairwise(x, y).mean() - xx.sum() / (n * (n - 1)) - yy.sum() / (m * (m - 1))


def _mmd_reference(x, y, h):
    n, m = len(x), len(y)
    k = lambda d: np.exp(-(d**2) / (2 * h**2))
    kxx, kyy = k(_pairwise(x, x)), k(_pairwise(y, y))
    np.fill_diagonal(kxx, 0.0)
    np.fill_diagonal(kyy, 0.0)
    return kxx.sum() / (n * (n - 1)) + kyy.sum() / (m * (m - 1)) - 2 * k(_pairwise(x, y)).mean()


def _normal(seed, shape):
    # Test inputs come from NumPy: XLA's CPU compile of each new jr.normal shape costs ~1 s.
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype=jnp.float32)


def _repeat(stat, shift, n=400, d=1, num_reps=16):
    """`stat(x, y)` on `num_reps` independent pairs x ~ N(0, I_d), y ~ N(shift, I_d), each of
    n points (vmapped, which also checks that the metric traces). Returns the mean and its
    standard error, estimated from the spread of the repetitions."""
    xs = _normal(100, (num_reps, n, d))
    ys = _normal(101, (num_reps, n, d)) + shift
    values = np.asarray(jax.vmap(stat)(xs, ys), dtype=np.float64)
    return values.mean(), values.std(ddof=1) / np.sqrt(num_reps)


# ------------------------------------------------------------------------------------------
# Blocked computations against direct ones


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_blocked_pairwise_statistics_match_direct(chunk_size):
    x = _normal(0, (13, 2, 2))  # trailing data axes are flattened
    y = 0.5 + 2 * _normal(1, (7, 2, 2))
    np.testing.assert_allclose(
        metrics.energy_distance(x, y, chunk_size=chunk_size),
        _energy_reference(x, y),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        metrics.mmd(x, y, bandwidth=1.5, chunk_size=chunk_size),
        _mmd_reference(x, y, 1.5),
        rtol=1e-5,
        atol=1e-6,
    )
    d = _pairwise(x, y)
    np.testing.assert_allclose(
        metrics.nearest_neighbour_distance(x, y, chunk_size=chunk_size), d.min(1), rtol=1e-6
    )


def test_median_heuristic_bandwidth():
    x = _normal(0, (30, 3))
    y = _normal(1, (20, 3)) + 1.0
    z = np.concatenate([x, y])
    h = np.median(_pairwise(z, z)[np.triu_indices(50, k=1)])
    np.testing.assert_allclose(metrics.mmd(x, y), _mmd_reference(x, y, h), rtol=1e-5)


def test_pairwise_memory_is_blocked():
    """At n = m = 2e4 a full pairwise matrix would take 1.6 GB; the blocked version stays
    at a few times the 2^22-pair block (16 MB)."""
    s = jax.ShapeDtypeStruct((20_000, 2), jnp.float32)
    for f in (metrics.energy_distance, metrics.nearest_neighbour_distance):
        compiled = jax.jit(f).lower(s, s).compile()
        analysis = compiled.memory_analysis()
        if analysis is None:
            pytest.skip("this backend reports no memory analysis")
        assert analysis.temp_size_in_bytes < 64 * 2**20


# ------------------------------------------------------------------------------------------
# Energy distance and MMD: statistical properties


def test_energy_distance_same_distribution_is_zero_in_mean():
    # The U-statistic is exactly unbiased: its mean is 0 when P = Q.
    mean, se = _repeat(metrics.energy_distance, 0.0, d=2)
    assert abs(mean) < 4 * se
    shifted, _ = _repeat(metrics.energy_distance, 0.5, d=2)
    assert shifted > 20 * se


def test_energy_distance_1d_gaussians_closed_form():
    # X ~ N(0, 1), Y ~ N(mu, 1): X - Y ~ N(-mu, 2), X - X' ~ N(0, 2), and the folded normal
    # mean E|N(mu, s^2)| = s sqrt(2/pi) exp(-mu^2 / (2 s^2)) + mu (1 - 2 Phi(-mu / s)).
    mu, s = 1.0, math.sqrt(2)
    e_xy = s * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * s**2)) + mu * (
        1 - 2 * scipy.stats.norm.cdf(-mu / s)
    )
    e_xx = s * math.sqrt(2 / math.pi)
    exact = 2 * e_xy - 2 * e_xx
    mean, se = _repeat(metrics.energy_distance, mu)
    assert abs(mean - exact) < 4 * se
    assert se < 0.05 * exact  # the check has power


def test_mmd_same_distribution_is_zero_in_mean():
    mean, se = _repeat(lambda x, y: metrics.mmd(x, y, bandwidth=1.5), 0.0, d=2)
    assert abs(mean) < 4 * se


def test_mmd_gaussians_closed_form():
    # With k(a, b) = exp(-|a - b|^2 / (2 h^2)) and Z ~ N(m, s^2 I_d):
    # E k = (h^2 / (h^2 + s^2))^(d/2) exp(-|m|^2 / (2 (h^2 + s^2))). Here s^2 = 2 for every
    # pair, so MMD^2 = 2 A (1 - exp(-|mu|^2 / (2 (h^2 + 2)))) with A = (h^2 / (h^2 + 2))^(d/2).
    h, d, shift = 1.5, 2, 0.7
    mu2 = d * shift**2
    a = (h**2 / (h**2 + 2)) ** (d / 2)
    exact = 2 * a * (1 - math.exp(-mu2 / (2 * (h**2 + 2))))
    stat = lambda x, y: metrics.mmd(x, y, bandwidth=h)
    mean, se = _repeat(stat, shift, d=d)
    assert abs(mean - exact) < 4 * se
    assert se < 0.1 * exact


def test_mmd_median_heuristic_detects_a_shift():
    x, y = _normal(5, (1000, 3)), _normal(6, (1000, 3))
    same = metrics.mmd(x, y)
    assert metrics.mmd(x, y + 0.5) > 20 * abs(same)


def test_energy_distance_under_jit_and_grad():
    x, y = _normal(0, (13, 4)), _normal(1, (7, 4)) + 0.3
    f = metrics.energy_distance
    np.testing.assert_allclose(jax.jit(f)(x, y), f(x, y), rtol=1e-5)
    # Coincident points: the distance's gradient is defined, not NaN. With all n = 13 x's at
    # 0 and all y's at 1 = (1, 1, 1, 1), only the cross term 2/(nm) sum |x_i - y_j| moves:
    # its gradient in x_i is (2/n) (x_i - y)/|x_i - y| = (2/13) (-1/2) in every entry.
    grad = jax.grad(f)(jnp.zeros_like(x), jnp.ones_like(y))
    np.testing.assert_allclose(grad, np.full(x.shape, -1 / 13), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# Sliced Wasserstein


def test_sliced_wasserstein_of_a_shift():
    # y = x + mu exactly: on every direction the sorted projections differ by theta . mu, so
    # SW_2^2 = mean over directions of (theta . mu)^2, whose expectation is |mu|^2 / d. Per
    # direction (theta . e)^2 ~ Beta(1/2, (d-1)/2), variance 2(d-1) / (d^2 (d+2)).
    n, d, num_projections = 500, 4, 4096
    mu = jnp.array([2.0, 0.0, 0.0, 0.0])
    x = _normal(0, (n, d))
    sw = metrics.sliced_wasserstein(x, x + mu, key=jr.PRNGKey(1), num_projections=4096)
    mu2 = float(mu @ mu)
    se = mu2 * math.sqrt(2 * (d - 1) / (d**2 * (d + 2)) / num_projections)
    assert abs(float(sw) ** 2 - mu2 / d) < 4 * se
    # An independent sample z with the same empirical mean as x, shifted by mu: on each
    # direction W_2^2 = (theta . mu)^2 + W_2^2(x, z) projected, and the second term is >= 0
    # and O(1/n) (about 0.008 +- 0.004 for two samples of 500 from N(0, 1)).
    z = _normal(2, (n, d))
    y = z - z.mean(0) + x.mean(0) + mu
    sw_indep = metrics.sliced_wasserstein(x, y, key=jr.PRNGKey(1), num_projections=4096)
    assert -1e-4 < float(sw_indep) ** 2 - float(sw) ** 2 < 0.03


def test_sliced_wasserstein_identity_and_symmetry():
    x = _normal(0, (100, 3))
    y = _normal(1, (100, 3))
    assert float(metrics.sliced_wasserstein(x, x, key=jr.PRNGKey(0))) == 0.0
    np.testing.assert_allclose(
        metrics.sliced_wasserstein(x, y, key=jr.PRNGKey(0)),
        metrics.sliced_wasserstein(y, x, key=jr.PRNGKey(0)),
        rtol=1e-5,
    )


def _wasserstein_1d(x, y, p):
    """W_p between 1-D empirical measures on a grid fine enough to be exact: every quantile
    function is constant on intervals of width 1/(n m), so midpoints of 2 n m cells suffice."""
    xs, ys = np.sort(x), np.sort(y)
    n, m = len(xs), len(ys)
    u = (np.arange(2 * n * m) + 0.5) / (2 * n * m)
    return np.mean(
        np.abs(xs[np.ceil(u * n).astype(int) - 1] - ys[np.ceil(u * m).astype(int) - 1]) ** p
    ) ** (1 / p)


def test_sliced_wasserstein_unequal_sizes_is_exact_in_1d():
    # In 1-D every direction is +-1, so SW_p is W_p itself.
    x = np.asarray([[0.0], [1.0]], dtype=np.float32)
    y = np.asarray([[0.0], [0.5], [1.0]], dtype=np.float32)
    exact = {1: 1 / 6, 2: math.sqrt(1 / 12), 3.5: (0.5**3.5 / 3) ** (1 / 3.5)}
    for p, value in exact.items():
        sw = metrics.sliced_wasserstein(x, y, key=jr.PRNGKey(0), p=p)
        np.testing.assert_allclose(sw, value, rtol=1e-5)
    x = np.random.default_rng(0).standard_normal(7).astype(np.float32)
    y = np.random.default_rng(1).standard_normal(5).astype(np.float32) * 2 + 0.3
    for p in (1, 2, 3.5):
        sw = metrics.sliced_wasserstein(x, y, key=jr.PRNGKey(0), num_projections=3, p=p)
        np.testing.assert_allclose(sw, _wasserstein_1d(x, y, p), rtol=1e-5)
    np.testing.assert_allclose(
        metrics.sliced_wasserstein(x, y, key=jr.PRNGKey(0), num_projections=3, p=1),
        scipy.stats.wasserstein_distance(x, y),
        rtol=1e-5,
    )


# ------------------------------------------------------------------------------------------
# Mixture weights and memorisation: exact on hand-built data


def test_mixture_weights_exact():
    means = jnp.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = jnp.array(
        [
            [0.1, 0.2],
            [-1.0, 0.5],
            [9.0, 1.0],
            [11.0, -2.0],
            [10.0, 0.0],
            [0.5, 7.0],
            [4.0, 0.0],
            [6.0, 0.0],
        ]
    )
    # Nearest means: 0, 0, 1, 1, 1, 2, 0, 1.
    np.testing.assert_allclose(metrics.mixture_weights(samples, means), [3 / 8, 4 / 8, 1 / 8])
    np.testing.assert_allclose(
        metrics.weight_error(samples, means, jnp.array([0.5, 0.25, 0.25])), 0.25, rtol=1e-6
    )
    # A component with no samples gets weight 0; images work like vectors.
    np.testing.assert_allclose(
        metrics.mixture_weights(
            jnp.zeros((4, 1, 2, 2)), jnp.stack([jnp.ones((1, 2, 2)), jnp.zeros((1, 2, 2))])
        ),
        [0.0, 1.0],
    )


def test_memorisation_metrics_exact():
    train = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    samples = jnp.array([[0.0, 0.0], [0.5, 0.05], [3.0, 4.0], [0.0, 5.2], [1.0, 0.0]])
    expected = [0.0, math.hypot(0.5, 0.05), math.hypot(3.0, 1.0), 0.2, 0.0]
    for chunk_size in (None, 1, 2):
        d = metrics.nearest_neighbour_distance(samples, train, chunk_size=chunk_size)
        np.testing.assert_allclose(d, expected, rtol=1e-6, atol=0)
    assert float(metrics.nearest_neighbour_distance(samples, train)[0]) == 0.0
    np.testing.assert_allclose(metrics.memorised_fraction(samples, train, radius=0.1), 2 / 5)
    np.testing.assert_allclose(metrics.memorised_fraction(samples, train, radius=0.3), 3 / 5)
    np.testing.assert_allclose(metrics.memorised_fraction(samples, train, radius=0.6), 4 / 5)
    np.testing.assert_allclose(metrics.memorised_fraction(samples, train, radius=10.0), 1.0)


def test_exact_training_points_are_found_among_many():
    train = 10 * _normal(0, (3000, 2))
    samples = train[::7] + 1e-3 * _normal(1, (429, 2))
    d = metrics.nearest_neighbour_distance(samples, train)
    np.testing.assert_allclose(d, np.linalg.norm(samples - train[::7], axis=1), rtol=1e-4)
    assert float(metrics.memorised_fraction(samples, train, radius=0.01)) == 1.0


# ------------------------------------------------------------------------------------------
# Validation


X = jnp.zeros((5, 2))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: metrics.energy_distance(X, jnp.zeros((5, 3))), "same data shape"),
        (lambda: metrics.mmd(X, jnp.zeros((5, 2, 1))), "same data shape"),
        (lambda: metrics.energy_distance(X[:1], X), "n >= 2"),
        (lambda: metrics.mmd(X, X[:1]), "`y`.*n >= 2"),
        (lambda: metrics.energy_distance(X.at[0, 0].set(jnp.nan), X), "`x` contains NaN"),
        (lambda: metrics.mmd(X, X.at[0, 0].set(jnp.inf)), "`y` contains NaN"),
        (lambda: metrics.mmd(X, X, bandwidth=0.0), "bandwidth"),
        (lambda: metrics.mmd(X, X), "median heuristic"),
        (lambda: metrics.energy_distance(X, X, chunk_size=0), "chunk_size"),
        (lambda: metrics.sliced_wasserstein(X, X, key=jr.PRNGKey(0), p=0.5), "`p`"),
        (
            lambda: metrics.sliced_wasserstein(X, X, key=jr.PRNGKey(0), num_projections=0),
            "num_projections",
        ),
        (lambda: metrics.sliced_wasserstein(X[:0], X, key=jr.PRNGKey(0)), "n >= 1"),
        (lambda: metrics.mixture_weights(X, jnp.zeros((2, 3))), "same data shape"),
        (lambda: metrics.nearest_neighbour_distance(X, jnp.zeros((0, 2))), "`train`"),
        (lambda: metrics.memorised_fraction(X, X, radius=0.0), "radius"),
        (lambda: metrics.memorised_fraction(X, X, radius=-1.0), "radius"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mismatched_weights_fail_the_shape_check():
    with pytest.raises(TypeError, match="weights"):
        metrics.weight_error(X, jnp.zeros((2, 2)), jnp.ones(3) / 3)


def test_nan_check_is_skipped_under_jit():
    out = jax.jit(metrics.energy_distance)(X.at[0, 0].set(jnp.nan), X + 1.0)
    assert np.isnan(out)
