import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scoresde as sd


jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    """Drop every compiled executable after each test module.

    XLA:CPU maps about three memory regions per live executable, and JAX's caches keep every
    executable alive. The suite compiles thousands, so one pytest process went past the
    kernel's `vm.max_map_count` (65,530) and segfaulted inside the compiler."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session", autouse=True)
def _scoresde_cache(tmp_path_factory):
    """The digits classifier's cache in a temporary folder, not the user's home; shared
    by the whole session, so the classifier is trained once."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SCORESDE_CACHE", str(tmp_path_factory.mktemp("scoresde_cache")))
    yield
    mp.undo()


def mixture_params():
    """A 2-D mixture of 3 Gaussians with unequal weights and full covariances."""
    weights = jnp.array([0.5, 0.3, 0.2])
    means = jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]])
    covariances = jnp.stack(
        [0.3 * jnp.eye(2), jnp.array([[0.5, 0.2], [0.2, 0.3]]), 0.2 * jnp.eye(2)]
    )
    return weights, means, covariances


@pytest.fixture
def mixture():
    return mixture_params()


def mixture_moments(weights, means, covariances):
    """Exact mean and covariance of a Gaussian mixture."""
    w, mu, cov = map(np.asarray, (weights, means, covariances))
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, cov + np.einsum("ki,kj->kij", mu, mu))
    return mean, second - np.outer(mean, mean)


def assert_moments_match(x, weights, means, covariances, score, n_se=4.0):
    """Weights (mean responsibilities), mean and covariance of samples `x` against the exact
    mixture, each within `n_se` standard errors estimated from the samples themselves."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    mean, cov = mixture_moments(weights, means, covariances)
    # E[r_k(x)] = w_k exactly under the mixture.
    resp = np.asarray(jax.vmap(lambda y: score.responsibilities(0.0, y))(jnp.asarray(x)))
    w_hat, w_se = resp.mean(0), resp.std(0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(w_hat - np.asarray(weights)), n_se * w_se + 1e-12)
    m_hat, m_se = x.mean(0), x.std(0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(m_hat - mean), n_se * m_se)
    centred = x - m_hat
    prods = np.einsum("ni,nj->nij", centred, centred)
    c_hat, c_se = prods.mean(0), prods.std(0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(c_hat - cov), n_se * c_se)


@pytest.fixture
def vp():
    return sd.VPSDE(beta_min=0.1, beta_max=20.0)
