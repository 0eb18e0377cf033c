"""Objectives: the loss formulas at the exact score, and training to a metric threshold."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scoresde as sd
from scoresde import datasets, metrics, nn


C2 = 0.5  # data ~ N(0, C2 I) in the loss-formula tests


def gaussian_score(sde):
    """The exact score of N(0, C2 I) pushed through a linear SDE: -x / (m^2 C2 + s^2)."""
    return lambda t, x: -x / (sde.mean_coeff(t) ** 2 * C2 + sde.std(t) ** 2)


def mc_loss(objective, model, n=40_000, d=2, key=0):
    """The objective's per-point losses on n draws of N(0, C2 I): mean and standard error."""
    x = jnp.sqrt(C2) * jr.normal(jr.key(key), (n, d))
    keys = jax.vmap(lambda i: jr.fold_in(jr.key(key + 1), i))(jnp.arange(n))
    losses = jax.vmap(lambda x, k: objective.loss_one(model, x, k))(x, keys)
    return float(losses.mean()), float(losses.std() / np.sqrt(n))


def test_dsm_at_the_exact_score_is_the_posterior_variance():
    # With s = exact score, s(t) s + z = (m^2 C2 / v) z - s m x0 / v with v = m^2 C2 + s^2,
    # so the std2-weighted loss is 1/2 d E_t[m^2 C2 / v] (a 1-D integral, done on a grid).
    sde, d = sd.VPSDE(), 2
    objective = sd.DenoisingScoreMatching(sde)
    mean, se = mc_loss(objective, gaussian_score(sde), d=d)
    t = jnp.linspace(objective.times.eps, 1.0, 100_001)
    m2 = sde.mean_coeff(t) ** 2
    expected = 0.5 * d * float(jnp.mean(m2 * C2 / (m2 * C2 + sde.std(t) ** 2)))
    assert abs(mean - expected) < 4 * se


@pytest.mark.parametrize("weighting", ["likelihood", "constant", "std2"])
def test_importance_sampling_estimates_the_same_loss(weighting):
    # Both time distributions estimate E_{t~U}[lambda(t) l(t)]; any model will do.
    sde = sd.VPSDE()
    model = nn.TimeMLP(2, width=32, depth=2, key=jr.key(0))
    uniform = sd.DenoisingScoreMatching(sde, weighting=weighting)
    importance = sd.DenoisingScoreMatching(sde, weighting=weighting, time_sampling="importance")
    (mu, se_u), (mi, se_i) = mc_loss(uniform, model), mc_loss(importance, model, key=7)
    assert abs(mu - mi) < 4 * np.hypot(se_u, se_i)
    if weighting == "likelihood":  # the point of importance sampling: lower variance
        assert se_i < 0.5 * se_u


@pytest.mark.parametrize(
    "objective",
    [
        sd.ImplicitScoreMatching(),
        sd.SlicedScoreMatching(),
        sd.SlicedScoreMatching(projection="gaussian", variance_reduced=False, num_projections=2),
    ],
    ids=["ism", "ssm-vr", "ssm-gaussian"],
)
def test_time_free_losses_at_the_exact_score(objective):
    # For N(0, C2 I) and s = -x/C2: E[1/2 |s|^2 + tr grad s] = d/(2 C2) - d/C2 = -d/(2 C2);
    # the sliced estimators are unbiased for the same value.
    mean, se = mc_loss(objective, lambda t, x: -x / C2, d=3)
    assert abs(mean - (-3 / (2 * C2))) < 4 * se + 1e-6


def test_multi_noise_levels_are_annealed_langevins_levels():
    sde = sd.VESDE(0.01, 5.0)
    eps = float(sde.t_from_sigma(0.05))
    objective = sd.MultiNoiseDSM(sde, 12, eps=eps)
    sampler = sd.AnnealedLangevin(num_levels=12, steps_per_level=1, step_size=1e-3, eps=eps)
    np.testing.assert_allclose(objective.level_times(), sampler.level_times(sde), rtol=1e-6)
    np.testing.assert_allclose(sde.std(objective.level_times()[-1]), 0.05, rtol=1e-4)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sd.DenoisingScoreMatching(sd.VPSDE(), weighting="sigma"), "weighting"),
        (lambda: sd.DenoisingScoreMatching(sd.VPSDE(), time_sampling="stratified"), "sampling"),
        (lambda: sd.DenoisingScoreMatching(sd.VPSDE(), eps=0.0), "eps"),
        (lambda: sd.DenoisingScoreMatching(sd.VPSDE(), eps=1.5), "eps"),
        (lambda: sd.MultiNoiseDSM(sd.VESDE(), 1), "num_levels"),
        (lambda: sd.SlicedScoreMatching(num_projections=0), "num_projections"),
        (lambda: sd.SlicedScoreMatching(projection="sphere"), "projection"),
        (lambda: sd.ImplicitScoreMatching(eps=1e-3), "eps"),
    ],
)
def test_bad_objective_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# -- training to a metric threshold --------------------------------------------------------

MEANS = jnp.array([[-1.0, 0.0], [1.0, 0.0]])


def toy(key, n):
    """Two well-separated Gaussians, std 0.4, equal weights."""
    weights, stds = jnp.array([0.5, 0.5]), jnp.array([0.4, 0.4])
    return datasets.gaussian_mixture(n, key=jr.key(key), weights=weights, means=MEANS, stds=stds)


@pytest.fixture(scope="module")
def noise_floor():
    """Energy distance between independent draws of 2000 points: an upper bound 5 standard
    deviations above its mean (about 0.004). A model under it cannot be told apart from
    the data by this test's sample size."""
    held = toy(2, 2000)
    draws = [float(metrics.energy_distance(toy(100 + i, 2000), held)) for i in range(20)]
    return held, float(np.mean(draws) + 5 * np.std(draws))


VP, VE = sd.VPSDE(), sd.VESDE(0.01, 5.0)
EPS_VE = float(VE.t_from_sigma(0.05))
LANGEVIN = sd.Langevin(num_steps=1000, step_size=1e-2, init_uniform=(-2.0, 2.0))
CASES = {
    "dsm-std2": (
        lambda k: nn.TimeMLP(2, width=128, key=k),
        sd.DenoisingScoreMatching(VP),
        VP,
        sd.ReverseSDE(num_steps=200),
    ),
    "dsm-likelihood-importance": (
        lambda k: nn.TimeMLP(2, width=128, key=k),
        sd.DenoisingScoreMatching(VP, weighting="likelihood", time_sampling="importance"),
        VP,
        sd.ReverseSDE(num_steps=200),
    ),
    "dsm-constant": (
        lambda k: nn.TimeMLP(2, width=128, key=k),
        sd.DenoisingScoreMatching(VP, weighting="constant", eps=1e-2),
        VP,
        sd.ReverseSDE(num_steps=200, eps=1e-2, denoise=True),
    ),
    "ism": (lambda k: nn.TimeFreeMLP(2, key=k), sd.ImplicitScoreMatching(), VP, LANGEVIN),
    "ssm": (lambda k: nn.TimeFreeMLP(2, key=k), sd.SlicedScoreMatching(), VP, LANGEVIN),
    "ncsn": (
        lambda k: nn.TimeMLP(2, width=128, key=k),
        sd.MultiNoiseDSM(VE, 10, eps=EPS_VE),
        VE,
        sd.AnnealedLangevin(
            num_levels=10, steps_per_level=100, step_size=1e-3, eps=EPS_VE, denoise=True
        ),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_objective_trains_a_model_that_matches_held_out_data(name, noise_floor):
    make_net, objective, sde, sampler = CASES[name]
    held, floor = noise_floor
    net = make_net(jr.key(4))
    untrained = sd.sample(sde, net, sampler, (2000, 2), key=jr.key(5))
    result = sd.fit(
        net,
        objective,
        toy(1, 4000),
        optimizer=optax.adam(2e-3),
        num_steps=4000 if name == "ncsn" else 2000,
        batch_size=256,
        key=jr.key(6),
        progress=False,
    )
    samples = sd.sample(sde, result.model, sampler, (2000, 2), key=jr.key(5))
    trained_ed = float(metrics.energy_distance(samples, held))
    untrained_ed = float(metrics.energy_distance(untrained, held))
    assert trained_ed < floor, (trained_ed, floor)
    assert untrained_ed > 100 * floor, (untrained_ed, floor)


@pytest.mark.parametrize(
    "objective",
    [
        sd.ImplicitScoreMatching(),
        sd.SlicedScoreMatching(),
        sd.SlicedScoreMatching(projection="gaussian", variance_reduced=False),
    ],
    ids=["ism", "ssm-vr", "ssm-gaussian"],
)
def test_implicit_and_sliced_learn_a_gaussian_score(objective):
    cov = jnp.array([[1.0, 0.6], [0.6, 0.8]])
    data = jr.multivariate_normal(jr.key(0), jnp.zeros(2), cov, (4000,))
    result = sd.fit(
        nn.TimeFreeMLP(2, key=jr.key(1)),
        objective,
        data,
        optimizer=optax.adam(1e-2),
        num_steps=1000,
        batch_size=128,
        key=jr.key(2),
        progress=False,
    )
    x = data[:1000]
    learned = jax.vmap(lambda y: result.model(0.0, y))(x)
    exact = -x @ jnp.linalg.inv(cov)
    cosine = jnp.sum(learned * exact, 1) / (
        jnp.linalg.norm(learned, axis=1) * jnp.linalg.norm(exact, axis=1)
    )
    assert float(cosine.mean()) >= 0.9
