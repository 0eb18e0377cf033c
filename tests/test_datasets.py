import sys

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import scoresde as sd
from scoresde import datasets as ds, metrics


TOY = [
    ds.circle,
    ds.sphere,
    ds.swiss_roll,
    ds.ncsn_mixture,
    ds.two_moons,
    ds.checkerboard,
    ds.eight_gaussians,
    ds.pinwheel,
]
DIMS = [2, 3, 2, 2, 2, 2, 2, 2]
# One sample size for every test, so that each sampler compiles once (XLA's CPU compile of
# the threefry PRNG dominates the run time of this file).
N = 4099


@pytest.mark.parametrize("make,dim", list(zip(TOY, DIMS, strict=True)))
def test_shape_dtype_and_keys(make, dim):
    x = make(N, key=jr.PRNGKey(0))
    assert x.shape == (N, dim)
    assert x.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(x)))
    np.testing.assert_array_equal(x, make(N, key=jr.PRNGKey(0)))
    assert not np.allclose(x, make(N, key=jr.PRNGKey(1)))


@pytest.mark.parametrize("make", TOY)
@pytest.mark.parametrize("num", [0, -3])
def test_bad_num(make, num):
    with pytest.raises(ValueError, match="num"):
        make(num, key=jr.PRNGKey(0))


def test_jit_with_static_num():
    f = jax.jit(lambda key, noise: ds.swiss_roll(N, key=key, noise=noise))
    np.testing.assert_allclose(
        f(jr.PRNGKey(3), 0.5), ds.swiss_roll(N, key=jr.PRNGKey(3), noise=0.5), rtol=1e-5
    )


def test_circle_points_are_the_k_equally_spaced_points():
    x = np.asarray(ds.circle(N, key=jr.PRNGKey(0), radius=2.0), dtype=np.float64)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 2.0, rtol=1e-6)
    k = np.arctan2(x[:, 1], x[:, 0]) / (2 * np.pi) * 8
    np.testing.assert_allclose(k, np.round(k), atol=1e-5)
    counts = np.bincount(np.round(k).astype(int) % 8, minlength=8)
    # Multinomial(N, 1/8): the SE of each count is sqrt(N * 1/8 * 7/8).
    np.testing.assert_array_less(np.abs(counts - N / 8), 4 * np.sqrt(N * 7 / 64))


def test_sphere_is_uniform_on_the_unit_sphere():
    n, d = N, 3
    x = np.asarray(ds.sphere(n, key=jr.PRNGKey(0), dim=d), dtype=np.float64)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    # E x = 0 and E x x^T = I/d; each coordinate has variance 1/d, so the mean's SE is
    # sqrt(1/(d n)); x_i^2 has variance 2(d-1)/(d^2(d+2)) (a Beta(1/2, (d-1)/2) variable).
    np.testing.assert_array_less(np.abs(x.mean(0)), 4 / np.sqrt(d * n))
    se2 = np.sqrt(2 * (d - 1) / (d**2 * (d + 2)) / n)
    np.testing.assert_array_less(np.abs((x**2).mean(0) - 1 / d), 4 * se2)


def test_swiss_roll_geometry_and_range():
    scale = 0.2
    x = np.asarray(ds.swiss_roll(N, key=jr.PRNGKey(0)), dtype=np.float64)
    assert np.all(np.abs(x) <= 3.0)
    t = np.linalg.norm(x, axis=1) / scale
    assert t.min() >= 1.5 * np.pi * (1 - 1e-6) and t.max() <= 4.5 * np.pi * (1 + 1e-6)
    # Noise-free, each point is t (cos t, sin t) * scale with t its own radius.
    np.testing.assert_allclose(
        x / (scale * t[:, None]), np.stack([np.cos(t), np.sin(t)], 1), atol=1e-4
    )
    # t is uniform on [1.5 pi, 4.5 pi]: its mean 3 pi has SE (3 pi / sqrt(3)) / sqrt(n).
    assert abs(t.mean() - 3 * np.pi) < 4 * np.sqrt(3) * np.pi / np.sqrt(N)
    noisy = ds.swiss_roll(N, key=jr.PRNGKey(0), noise=1.0, scale=0.1)
    assert not np.allclose(noisy, x / 2)


def test_two_moons_lie_on_their_arcs():
    q = (np.asarray(ds.two_moons(N, key=jr.PRNGKey(0), noise=0.0)) - [-1.0, -0.2]) / 2
    upper = np.abs(np.linalg.norm(q, axis=1) - 1) < 1e-5
    lower = np.abs(np.linalg.norm(q - [1.0, 0.5], axis=1) - 1) < 1e-5
    assert np.all(upper | lower)
    assert np.all(q[upper, 1] >= -1e-6) and np.all(q[lower & ~upper, 1] <= 0.5 + 1e-6)
    # Each moon with probability 1/2: SE of the fraction is 0.5 / sqrt(N).
    assert abs(upper.mean() - 0.5) < 4 * 0.5 / np.sqrt(N)


def test_checkerboard_parity():
    x = np.asarray(ds.checkerboard(N, key=jr.PRNGKey(0)))
    assert np.all(np.abs(x) <= 4.0)
    cells = np.floor(x / 2).astype(int)
    assert np.all((cells.sum(1) % 2) == 0)
    counts = np.unique(cells, axis=0, return_counts=True)[1]
    assert len(counts) == 8  # every black square is hit
    np.testing.assert_array_less(np.abs(counts - N / 8), 4 * np.sqrt(N * 7 / 64))


def test_eight_gaussians_components():
    n, radius, std = N, 2 * np.sqrt(2), np.sqrt(2) / 4
    x = np.asarray(ds.eight_gaussians(n, key=jr.PRNGKey(0)), dtype=np.float64)
    angles = np.arange(8) * np.pi / 4
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    k = np.argmin(((x[:, None] - centres) ** 2).sum(-1), axis=1)
    counts = np.bincount(k, minlength=8)
    np.testing.assert_array_less(np.abs(counts - n / 8), 4 * np.sqrt(n / 8 * 7 / 8))
    resid = x - centres[k]
    # Neighbouring centres are 2.16 apart = 6.1 std: assignment errors are negligible.
    np.testing.assert_allclose(resid.std(0), std, rtol=4 / np.sqrt(2 * n))


def test_pinwheel_noise_free_arms():
    x = np.asarray(
        ds.pinwheel(N, key=jr.PRNGKey(0), radial_std=0.0, tangential_std=0.0, num_arms=5)
    )
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 2.0, rtol=1e-5)
    # f = (1, 0), so x = 2 (cos a, -sin a) with a = 2 pi k / 5 + 0.25 e.
    k = (-np.arctan2(x[:, 1], x[:, 0]) - 0.25 * np.e) / (2 * np.pi / 5)
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)
    assert len(np.unique(np.round(k) % 5)) == 5
    assert np.abs(ds.pinwheel(N, key=jr.PRNGKey(1))).max() < 5.0


def test_gaussian_mixture_weights_and_stds():
    n = N
    weights = jnp.array([0.2, 0.5, 0.3])
    means = jnp.array([[-20.0, 0.0], [0.0, 20.0], [20.0, 0.0]])
    stds = jnp.array([0.5, 1.0, 2.0])
    x = ds.gaussian_mixture(n, key=jr.PRNGKey(0), weights=weights, means=means, stds=stds)
    assert x.shape == (n, 2) and x.dtype == jnp.float32
    again = ds.gaussian_mixture(n, key=jr.PRNGKey(0), weights=weights, means=means, stds=stds)
    np.testing.assert_array_equal(x, again)
    w_hat = np.asarray(metrics.mixture_weights(x, means))
    se = np.sqrt(np.asarray(weights) * (1 - np.asarray(weights)) / n)
    np.testing.assert_array_less(np.abs(w_hat - np.asarray(weights)), 4 * se)
    k = np.argmin(((np.asarray(x)[:, None] - np.asarray(means)) ** 2).sum(-1), axis=1)
    for j in range(3):
        r = np.asarray(x)[k == j] - np.asarray(means)[j]
        # Sample std of m normal draws: relative SE 1/sqrt(2m) (the 2 coordinates pooled).
        np.testing.assert_allclose(r.std(), stds[j], rtol=4 / np.sqrt(4 * (k == j).sum()))


def test_ncsn_mixture_matches_its_params():
    weights, means, covariances = ds.ncsn_mixture_params()
    np.testing.assert_allclose(weights, [0.95, 0.05])
    np.testing.assert_allclose(means, [[-5.0, -5.0], [5.0, 5.0]])
    np.testing.assert_allclose(covariances, np.stack([np.eye(2)] * 2))
    n = N
    x = ds.ncsn_mixture(n, key=jr.PRNGKey(0))
    # The exact mixture built from the same parameters: E r_k(x) = w_k under the mixture.
    score = sd.GaussianMixtureScore(
        sd.VPSDE(), weights=weights, means=means, covariances=covariances
    )
    resp = np.asarray(jax.vmap(lambda y: score.responsibilities(0.0, y))(x))
    se = np.sqrt(0.95 * 0.05 / n)
    np.testing.assert_array_less(np.abs(resp.mean(0) - np.asarray(weights)), 4 * se)
    # Sample covariance of m unit-variance draws: SE sqrt(2/m) on the diagonal, sqrt(1/m) off.
    first = np.asarray(x)[resp[:, 0] > 0.5]
    np.testing.assert_allclose(np.cov(first.T), np.eye(2), atol=4 * np.sqrt(2 / len(first)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(weights=jnp.array([0.5, 0.6]), means=jnp.zeros((2, 2)), stds=1.0), "sum to 1"),
        (dict(weights=jnp.array([1.5, -0.5]), means=jnp.zeros((2, 2)), stds=1.0), "negative"),
        (dict(weights=jnp.array([0.5, 0.5]), means=jnp.zeros((2, 2)), stds=0.0), "stds"),
        (dict(weights=jnp.array([0.5, 0.5]), means=jnp.zeros((2, 2)), stds=-1.0), "stds"),
        (dict(weights=jnp.array([0.5, 0.5]), means=jnp.full((2, 2), jnp.nan), stds=1.0), "NaN"),
    ],
)
def test_gaussian_mixture_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ds.gaussian_mixture(10, key=jr.PRNGKey(0), **kwargs)


def test_gaussian_mixture_mismatched_shapes():
    with pytest.raises(Exception, match="means"):
        ds.gaussian_mixture(
            10,
            key=jr.PRNGKey(0),
            weights=jnp.array([0.5, 0.5]),
            means=jnp.zeros((3, 2)),
            stds=1.0,
        )


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: ds.circle(5, key=jr.PRNGKey(0), num_points=0), "num_points"),
        (lambda: ds.circle(5, key=jr.PRNGKey(0), radius=-1.0), "radius"),
        (lambda: ds.sphere(5, key=jr.PRNGKey(0), dim=0), "dim"),
        (lambda: ds.swiss_roll(5, key=jr.PRNGKey(0), noise=-0.1), "noise"),
        (lambda: ds.swiss_roll(5, key=jr.PRNGKey(0), scale=0.0), "scale"),
        (lambda: ds.two_moons(5, key=jr.PRNGKey(0), noise=float("nan")), "noise"),
        (lambda: ds.eight_gaussians(5, key=jr.PRNGKey(0), std=0.0), "std"),
        (lambda: ds.pinwheel(5, key=jr.PRNGKey(0), num_arms=0), "num_arms"),
    ],
)
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_load_digits():
    images, labels = ds.load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == jnp.float32
    assert labels.shape == (1797,) and jnp.issubdtype(labels.dtype, jnp.integer)
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    # Pixel values are k/16 for integers k.
    np.testing.assert_allclose(images * 16, np.round(np.asarray(images) * 16), atol=1e-5)
    assert set(np.unique(labels).tolist()) == set(range(10))
    shuffled, shuffled_labels = ds.load_digits(key=jr.PRNGKey(0))
    assert not np.array_equal(shuffled_labels, labels)
    perm = np.asarray(jr.permutation(jr.PRNGKey(0), 1797))
    np.testing.assert_array_equal(shuffled, images[perm])
    np.testing.assert_array_equal(shuffled_labels, labels[perm])


def test_load_digits_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "scoresde\[digits\]"'):
        ds.load_digits()


def test_train_test_split():
    n = 1797  # the size of the digits, so the permutation compiles once for both tests
    data = jnp.arange(2.0 * n).reshape(n, 2)
    train, test = ds.train_test_split(data, key=jr.PRNGKey(0), test_fraction=0.2)
    assert train.shape == (n - 359, 2) and test.shape == (359, 2)
    rows = np.concatenate([train[:, 0], test[:, 0]])
    np.testing.assert_array_equal(np.sort(rows), data[:, 0])  # a partition of the rows
    again = ds.train_test_split(data, key=jr.PRNGKey(0), test_fraction=0.2)
    np.testing.assert_array_equal(again[1], test)
    assert not np.array_equal(ds.train_test_split(data, key=jr.PRNGKey(1))[1], test)
    labels = jnp.arange(n)
    (tr_x, tr_y), (te_x, te_y) = ds.train_test_split((data, labels), key=jr.PRNGKey(0))
    np.testing.assert_array_equal(te_x, test)
    np.testing.assert_array_equal(tr_x[:, 0], 2 * tr_y)  # rows and labels split alike
    np.testing.assert_array_equal(te_x[:, 0], 2 * te_y)


@pytest.mark.parametrize(
    "data,kwargs,match",
    [
        (jnp.zeros((3, 2)), dict(test_fraction=0.1), "both must be >= 1"),
        (jnp.zeros((3, 2)), dict(test_fraction=1.0), "test_fraction"),
        ((jnp.zeros((3, 2)), jnp.zeros(4)), {}, "first axis"),
    ],
)
def test_train_test_split_bad_input(data, kwargs, match):
    with pytest.raises(Exception, match=match):
        ds.train_test_split(data, key=jr.PRNGKey(0), **kwargs)
