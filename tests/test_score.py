"""Exact scores: gradients of their log-densities, the seed-000 form, bad input."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import mixture_moments

import scoresde as sd


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.VESDE(sigma_min=0.1, sigma_max=10.0)])
def test_mixture_score_is_gradient_of_log_prob(sde, mixture):
    score = sd.GaussianMixtureScore(
        sde, weights=mixture[0], means=mixture[1], covariances=mixture[2]
    )
    x = jnp.array([0.3, -0.7])
    for t in (0.01, 0.3, 0.9):
        np.testing.assert_allclose(
            score(t, x), jax.grad(score.log_prob, argnums=1)(t, x), rtol=1e-4, atol=1e-5
        )


def test_mixture_log_prob_at_zero_matches_scipy_form(mixture):
    """At t = 0 the VE kernel is the identity: log p_0 is the mixture's own density."""
    sde = sd.VESDE(sigma_min=0.1, sigma_max=10.0)
    w, mu, cov = mixture
    score = sd.GaussianMixtureScore(sde, weights=w, means=mu, covariances=cov)
    x = jnp.array([1.0, 0.5])
    dens = sum(w[k] * jax.scipy.stats.multivariate_normal.pdf(x, mu[k], cov[k]) for k in range(3))
    np.testing.assert_allclose(score.log_prob(0.0, x), jnp.log(dens), rtol=1e-5)


def test_mixture_exact_sampler_moments(mixture):
    w, mu, cov = mixture
    score = sd.GaussianMixtureScore(sd.VPSDE(), weights=w, means=mu, covariances=cov)
    x = np.asarray(score.sample(jr.PRNGKey(0), 50_000), dtype=np.float64)
    mean, _ = mixture_moments(w, mu, cov)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4 * x.std(0) / np.sqrt(len(x)))


def test_mixture_in_five_dimensions():
    """Any dimension: a 5-D mixture's score is the gradient of its log-density."""
    key = jr.PRNGKey(0)
    a = jr.normal(key, (2, 5, 5))
    cov = a @ jnp.swapaxes(a, -1, -2) + 0.5 * jnp.eye(5)
    score = sd.GaussianMixtureScore(
        sd.SubVPSDE(), weights=jnp.array([0.4, 0.6]), means=jr.normal(key, (2, 5)), covariances=cov
    )
    x = jnp.linspace(-1, 1, 5)
    np.testing.assert_allclose(
        score(0.2, x), jax.grad(score.log_prob, argnums=1)(0.2, x), rtol=1e-4, atol=1e-5
    )


def test_empirical_score_matches_seed_000():
    """The SGM-from-scratch tutorial's log p-hat_t: logsumexp over training points of -|x - m
    x_j|^2 / (2 v)."""
    sde = sd.VPSDE(beta_min=0.001, beta_max=3)
    angles = jnp.linspace(0, 2 * jnp.pi * (1 - 1 / 8), 8)
    data = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)
    score = sd.EmpiricalScore(sde, data=data)
    x, t = jnp.array([0.2, 0.9]), 0.3

    def seed_log_hat_pt(x):
        potentials = jnp.sum(-((x - data * sde.mean_coeff(t)) ** 2) / (2 * sde.std(t) ** 2), 1)
        return jax.scipy.special.logsumexp(potentials, b=1 / 8)

    np.testing.assert_allclose(score(t, x), jax.grad(seed_log_hat_pt)(x), rtol=1e-5)
    # log_prob adds the Gaussian normaliser the seed drops.
    norm = -jnp.log(2 * jnp.pi * sde.std(t) ** 2)
    np.testing.assert_allclose(score.log_prob(t, x), seed_log_hat_pt(x) + norm, rtol=1e-5)


def test_empirical_score_on_images():
    data = jr.normal(jr.PRNGKey(0), (6, 1, 4, 4))
    score = sd.EmpiricalScore(sd.VPSDE(), data=data)
    x = jnp.zeros((1, 4, 4))
    assert score(0.5, x).shape == (1, 4, 4)
    np.testing.assert_allclose(
        score(0.5, x), jax.grad(score.log_prob, argnums=1)(0.5, x), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(weights=[0.5, 0.6], means=[[0.0], [1.0]], covariances=[[[1.0]], [[1.0]]]),
            "sum to 1",
        ),
        (
            dict(weights=[0.5, 0.5], means=[[0.0], [1.0], [2.0]], covariances=[[[1.0]], [[1.0]]]),
            "means",
        ),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], covariances=[[[1.0]]]), "covariances"),
        (
            dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], covariances=[[[1.0]], [[-1.0]]]),
            "positive definite",
        ),
        (
            dict(weights=[1.0], means=[[0.0, 0.0]], covariances=[[[1.0, 2.0], [0.0, 1.0]]]),
            "symmetric",
        ),
        (dict(weights=[1.0], means=[[jnp.nan]], covariances=[[[1.0]]]), "NaN"),
    ],
)
def test_mixture_bad_input(kwargs, match):
    kwargs = {k: np.asarray(v, dtype=np.float32) for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=match):
        sd.GaussianMixtureScore(sd.VPSDE(), **kwargs)


def test_mixture_rejects_non_arrays():
    with pytest.raises(Exception, match="weights"):
        sd.GaussianMixtureScore(
            sd.VPSDE(), weights="abc", means=jnp.zeros((1, 1)), covariances=jnp.ones((1, 1, 1))
        )


def test_empirical_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        sd.EmpiricalScore(sd.VPSDE(), data=jnp.array([[0.0, jnp.nan]]))
    score = sd.EmpiricalScore(sd.VPSDE(), data=jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="one sample of shape"):
        score(0.5, jnp.zeros((3, 2)))
