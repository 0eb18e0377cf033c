"""NCSNv2's techniques against numbers checkable by hand, and the NCSN toy-example tutorial's story
end to end."""

import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scoresde as sd
from scoresde import datasets, metrics, nn


def test_sigma_max_is_the_largest_pairwise_distance():
    # A 3-4-5 right triangle plus a point in the middle: the hypotenuse is the diameter.
    points = jnp.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    assert sd.max_pairwise_distance(points) == pytest.approx(5.0, rel=1e-6)
    # Chunking does not change it: 2000 random points, blocks of 128 vs one block.
    x = jr.normal(jr.key(0), (2000, 3))
    brute = float(jnp.max(jnp.linalg.norm(x[:, None] - x[None], axis=-1)))
    assert sd.max_pairwise_distance(x, chunk=128) == pytest.approx(brute, rel=1e-5)


def _phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@pytest.mark.parametrize("dim", [784, 3072, 12288])
def test_geometric_ratio_solves_the_overlap_equation(dim):
    gamma = sd.geometric_ratio(dim)
    a = math.sqrt(2 * dim) * (gamma - 1)
    assert _phi(a + 3 * gamma) - _phi(a - 3 * gamma) == pytest.approx(0.5, abs=1e-9)


def test_geometric_ratio_is_close_to_the_papers_ladders():
    # NCSNv2 used sigma 50 -> 0.01 in 232 levels for CIFAR-10 (D = 3072) and 90 -> 0.01 in
    # 500 for CelebA 64x64 (D = 12288): ratios 5000^(1/231) = 1.0376, 9000^(1/499) = 1.0184.
    # Technique 2 gives 1.0398 and 1.0195; the paper rounded L up, i.e. a slightly denser
    # ladder, so ours must be a little larger and within 0.3%.
    for dim, ratio in [(3072, 5000 ** (1 / 231)), (12288, 9000 ** (1 / 499))]:
        gamma = sd.geometric_ratio(dim)
        assert ratio < gamma < 1.003 * ratio


def test_langevin_step_size_reproduces_the_papers_epsilon():
    # NCSNv2 Table: CIFAR-10 eps = 6.2e-6, CelebA eps = 3.3e-6, both sigma_L = 0.01, T = 5.
    cifar = sd.langevin_step_size(0.01, 5000 ** (1 / 231), 5)
    celeba = sd.langevin_step_size(0.01, 9000 ** (1 / 499), 5)
    assert cifar == pytest.approx(6.2e-6, rel=0.01)
    assert celeba == pytest.approx(3.3e-6, rel=0.02)


def test_ncsnv2_hyperparameters_build_matching_sde_objective_and_sampler():
    data = 10 * jr.normal(jr.key(0), (300, 16))
    hp = sd.ncsnv2_hyperparameters(data, sigma_min=0.05, steps_per_level=3)
    assert hp.sigma_max == pytest.approx(sd.max_pairwise_distance(data))
    gamma = sd.geometric_ratio(16)
    expected_levels = math.ceil(math.log(hp.sigma_max / 0.05) / math.log(gamma)) + 1
    assert hp.num_levels == expected_levels and hp.gamma <= gamma
    sde, sampler = hp.sde(), hp.sampler()
    sigmas = sde.std(sampler.level_times(sde))
    np.testing.assert_allclose(sigmas[0], hp.sigma_max, rtol=1e-4)
    np.testing.assert_allclose(sigmas[-1], 0.05, rtol=1e-4)
    np.testing.assert_allclose(sigmas[:-1] / sigmas[1:], hp.gamma, rtol=1e-3)
    np.testing.assert_allclose(hp.objective().level_times(), sampler.level_times(sde), rtol=1e-6)


def test_bad_technique_arguments_raise():
    with pytest.raises(ValueError, match="dim"):
        sd.geometric_ratio(2)
    with pytest.raises(ValueError, match="gamma"):
        sd.langevin_step_size(0.01, 1.0, 5)
    with pytest.raises(ValueError, match="data"):
        sd.max_pairwise_distance(jnp.zeros((1, 2)))


def test_seed_002_story_annealed_langevin_recovers_the_weights_plain_does_not():
    # The NCSN toy-example tutorial: 0.95 N((-5,-5), I) + 0.05 N((5,5), I). Train NCSN's
    # multi-noise loss, then
    # annealed Langevin recovers 0.95/0.05 (within 0.05); plain Langevin with the same
    # network at the smallest noise keeps roughly the uniform start's split.
    weights, means, _ = datasets.ncsn_mixture_params()
    data = datasets.ncsn_mixture(5000, key=jr.key(0))
    sde = sd.VESDE(0.01, 20.0)
    eps = float(sde.t_from_sigma(0.1))
    result = sd.fit(
        nn.TimeMLP(2, width=128, key=jr.key(1)),
        sd.MultiNoiseDSM(sde, 10, eps=eps),
        data,
        optimizer=optax.adam(2e-3),
        num_steps=4000,
        batch_size=256,
        key=jr.key(2),
        progress=False,
    )
    annealed = sd.AnnealedLangevin(
        num_levels=10, steps_per_level=100, step_size=1e-3, eps=eps, init_uniform=(-8.0, 8.0)
    )
    x = sd.sample(sde, result.model, annealed, (5000, 2), key=jr.key(3))
    # 5000 samples: the standard error of a weight is sqrt(.95 * .05 / 5000) = 0.003.
    assert float(metrics.weight_error(x, means, weights)) < 0.05
    plain = sd.Langevin(num_steps=1000, step_size=1e-2, init_uniform=(-8.0, 8.0))
    y = sd.sample(
        sde, lambda t, x: result.model(jnp.asarray(eps), x), plain, (5000, 2), key=jr.key(3)
    )
    assert float(metrics.weight_error(y, means, weights)) > 0.2


def test_two_d_story_with_the_helpers_defaults():
    """Issue 17: on the 2-D 0.95/0.05 mixture the helpers' own choice (no hand-tuning)
    recovers the weights within 0.02 and the big mode's std within 5%."""
    weights, means, covariances = datasets.ncsn_mixture_params()
    data = datasets.ncsn_mixture(5000, key=jr.key(0))
    hp = sd.ncsnv2_hyperparameters(data)
    assert hp.steps_per_level == 33 and hp.step_size == pytest.approx(0.3 * hp.sigma_min**2)
    sde = hp.sde()
    exact = sd.GaussianMixtureScore(sde, weights=weights, means=means, covariances=covariances)
    x = np.asarray(
        sd.sample(sde, exact, hp.sampler(init_uniform=(-8.0, 8.0)), (5000, 2), key=jr.key(1))
    )
    assert float(metrics.weight_error(x, means, weights)) < 0.02
    near_big = np.linalg.norm(x - np.asarray(means[0]), axis=1) < np.linalg.norm(
        x - np.asarray(means[1]), axis=1
    )
    np.testing.assert_allclose(x[near_big].std(0), 1.0, rtol=0.05)


def test_the_dimension_error_names_dim():
    with pytest.raises(ValueError, match=r"ncsnv2_hyperparameters\(data, dim="):
        sd.geometric_ratio(2)
