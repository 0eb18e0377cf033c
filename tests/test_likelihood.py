"""log_prob through the probability-flow ODE against analytic densities; Hutchinson's
estimator; bits per dimension; a trained model; errors."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scoresde as sd
from scoresde import datasets, nn


def mixture(sde, dim):
    """A 3-component mixture in `dim` dimensions with unequal weights and full covariances."""
    key_m, key_c = jr.split(jr.key(dim))
    means = 2.0 * jr.normal(key_m, (3, dim))
    a = jr.normal(key_c, (3, dim, dim)) / jnp.sqrt(dim)
    covariances = 0.3 * jnp.einsum("kij,klj->kil", a, a) + 0.1 * jnp.eye(dim)
    weights = jnp.array([0.5, 0.3, 0.2])
    return sd.GaussianMixtureScore(sde, weights=weights, means=means, covariances=covariances)


SDES = {"vp": sd.VPSDE(), "ve": sd.VESDE(0.01, 50.0)}


@pytest.mark.parametrize("dim", [2, 5])
@pytest.mark.parametrize("name", list(SDES))
def test_log_prob_matches_the_analytic_density(name, dim):
    sde = SDES[name]
    score = mixture(sde, dim)
    x = score.sample(jr.key(1), 100, 0.0)
    result = sd.log_prob(sde, score, x, return_info=True)
    exact = jax.vmap(lambda y: score.log_prob(0.0, y))(x)
    # On average over the test points the model's density is the mixture's within 0.02
    # nats. Pointwise, log_prob differs from it by log p_T(x_T) - log prior(x_T): the
    # model's prior is N(0, s(T)^2 I), not the mixture pushed to T.
    assert abs(float(jnp.mean(result.log_prob - exact))) < 0.02
    # The integration itself, pointwise: with the mixture's own density at T in place of
    # the prior, the change of variables must give log p_eps(x). Measured: 1e-5 to 1e-4
    # nats in float32 with rtol = atol = 1e-5.
    at_T = jax.vmap(lambda y: score.log_prob(sde.T, y))(result.latent)
    at_eps = jax.vmap(lambda y: score.log_prob(sde.default_eps, y))(x)
    assert float(jnp.mean(jnp.abs(result.delta + at_T - at_eps))) < 2e-3
    np.testing.assert_allclose(result.log_prob, result.prior_log_prob + result.delta, rtol=1e-6)
    # Tsit5 is FSAL: 6 score evaluations per attempted step plus the first one, plus the
    # look at the score at the start that tells a NaN score from a spent step budget.
    steps = result.stats["num_steps"] + result.stats["num_rejected_steps"]
    np.testing.assert_array_equal(result.stats["num_score_evals"], 6 * steps + 2)


def test_fixed_steps_agree_with_adaptive():
    sde = SDES["vp"]
    score = mixture(sde, 2)
    x = score.sample(jr.key(2), 50, 0.0)
    adaptive = sd.log_prob(sde, score, x)
    fixed = sd.log_prob(sde, score, x, num_steps=200)
    assert float(jnp.max(jnp.abs(fixed - adaptive))) < 0.01


def test_hutchinson_is_unbiased_and_its_variance_falls_as_one_over_probes():
    sde = SDES["vp"]
    score = mixture(sde, 5)
    x0 = score.sample(jr.key(3), 1, 0.0)
    exact = float(sd.log_prob(sde, score, x0)[0])
    rows = jnp.repeat(x0, 400, axis=0)  # row i gets its own probes, from fold_in(key, i)
    one = sd.log_prob(sde, score, rows, key=jr.key(4), divergence=sd.HutchinsonDivergence())
    four = sd.log_prob(
        sde, score, rows, key=jr.key(5), divergence=sd.HutchinsonDivergence(num_probes=4)
    )
    for estimates in (one, four):
        se = float(jnp.std(estimates)) / np.sqrt(estimates.size)
        assert abs(float(jnp.mean(estimates)) - exact) < 3 * se
    # Independent probes: Var(M probes) = Var(1 probe) / M. With 400 rows the ratio of the
    # sample variances has a relative spread of roughly 0.1; allow 3 of those.
    ratio = float(jnp.var(one) / jnp.var(four))
    assert 4 * 0.7 < ratio < 4 * 1.4


def test_gaussian_probes_are_unbiased_too():
    sde = SDES["ve"]
    score = mixture(sde, 2)
    x0 = score.sample(jr.key(6), 1, 0.0)
    exact = float(sd.log_prob(sde, score, x0)[0])
    probe = sd.HutchinsonDivergence(probe="gaussian")
    est = sd.log_prob(sde, score, jnp.repeat(x0, 400, axis=0), key=jr.key(7), divergence=probe)
    assert abs(float(jnp.mean(est)) - exact) < 3 * float(jnp.std(est)) / 20


def test_float64():
    with jax.enable_x64(True):
        sde = sd.VPSDE()
        score = mixture(sde, 2)
        x = score.sample(jr.key(8), 20, 0.0).astype(jnp.float64)
        lp = sd.log_prob(sde, score, x, stepsize_controller=dfx.PIDController(rtol=1e-8, atol=1e-8))
        assert lp.dtype == jnp.float64
        exact = jax.vmap(lambda y: score.log_prob(0.0, y))(x)
        # Tighter tolerance: what is left is the prior mismatch and eps = 1e-3.
        assert float(jnp.mean(jnp.abs(lp - exact))) < 0.01


def test_bits_per_dim_bookkeeping():
    # One Gaussian over [0, 1]^2 as the model; 4-bit data. bits/dim must equal
    # -log2 p(y)/D + log2(K) for the same dequantised y, with p the model's density.
    sde = SDES["vp"]
    score = sd.GaussianMixtureScore(
        sde,
        weights=jnp.array([1.0]),
        means=jnp.full((1, 2), 0.5),
        covariances=0.05 * jnp.eye(2)[None],
    )
    x = jr.randint(jr.key(9), (30, 2), 0, 16)
    bpd = sd.bits_per_dim(sde, score, x, key=jr.key(10), num_bins=16)
    key_u, key_div = jr.split(jr.key(10))
    u = jax.vmap(lambda i: jr.uniform(jr.fold_in(key_u, i), (2,)))(jnp.arange(30))
    y = (x + u) / 16
    lp = sd.log_prob(sde, score, y)
    np.testing.assert_allclose(bpd, -lp / (2 * np.log(2)) + 4.0, rtol=1e-5)
    # The same data modelled on [-1, 1] (y' = 2y - 1): the offset drops by log2(2) = 1 bit
    # and the density of y' is that of y over 2^D, so bits/dim are unchanged up to the
    # ODE's error (0.02 nats is 0.015 bits/dim in 2-D).
    shifted = sd.GaussianMixtureScore(
        sde, weights=jnp.array([1.0]), means=jnp.zeros((1, 2)), covariances=0.2 * jnp.eye(2)[None]
    )
    bpd2 = sd.bits_per_dim(sde, shifted, x, key=jr.key(10), num_bins=16, data_range=(-1.0, 1.0))
    np.testing.assert_allclose(bpd2, bpd, atol=0.03)


def test_trained_model_beats_the_prior_on_held_out_data():
    data = datasets.two_moons(6000, key=jr.key(11))
    train, held = data[:5000], data[5000:5200]
    sde = sd.VPSDE()
    result = sd.fit(
        nn.TimeMLP(2, width=128, key=jr.key(12)),
        sd.DenoisingScoreMatching(sde),
        train,
        optimizer=optax.adam(2e-3),
        num_steps=1500,
        batch_size=256,
        key=jr.key(13),
        progress=False,
    )
    lp = sd.log_prob(sde, result.model, held)
    prior = jax.vmap(sde.prior_log_prob)(held)
    assert bool(jnp.all(jnp.isfinite(lp)))
    # Two moons has far less spread than N(0, I): a model must gain well over a nat.
    assert float(jnp.mean(lp)) > float(jnp.mean(prior)) + 1.0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"x": jnp.zeros((4, 3))}, ValueError, r"shape \(3,\)"),
        ({"x": jnp.zeros(4)}, ValueError, "batch axis"),
        ({"x": jnp.zeros((4, 2)).at[2, 0].set(jnp.nan)}, ValueError, "NaN"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": 2.0}, ValueError, "eps"),
        ({"divergence": sd.HutchinsonDivergence()}, ValueError, "key"),
        ({"divergence": "exact"}, Exception, "divergence"),
    ],
)
def test_bad_input_raises(kwargs, error, match):
    sde = SDES["vp"]
    args = {"x": jnp.zeros((4, 2)), **kwargs}
    with pytest.raises(error, match=match):
        sd.log_prob(sde, mixture(sde, 2), args.pop("x"), **args)


def test_bad_bits_per_dim_input_raises():
    sde = SDES["vp"]
    with pytest.raises(ValueError, match="integers"):
        sd.bits_per_dim(sde, mixture(sde, 2), jnp.full((3, 2), 256), key=jr.key(0))
    with pytest.raises(ValueError, match="integers"):
        sd.bits_per_dim(sde, mixture(sde, 2), jnp.full((3, 2), 0.5), key=jr.key(0))
    with pytest.raises(ValueError, match="num_probes"):
        sd.HutchinsonDivergence(num_probes=0)
