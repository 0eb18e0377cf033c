"""Issue 16, the numerical classes: bad numbers are refused at the call with one line that
names the argument, and numerically silent mistakes (a score of the wrong dtype, noise with
bfloat16's 128 values, a model on another SDE than its objective, a prior the SDE never
reaches, snapshots beyond the run, a noise ladder that ends below sigma_min) are errors,
warnings or correct results."""

import math
import warnings

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scoresde as sd
from scoresde._objective._base import perturb


KEY = jr.key(0)
INF, NAN = float("inf"), float("nan")


def _raises_one_line(error, match, call):
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value), str(info.value)
    return str(info.value)


def _mixture(sde, scale=1.0):
    means = scale * jnp.array([[-2.0, 0.0], [2.0, 0.0]])
    covs = jnp.stack([jnp.eye(2)] * 2) * (0.3 * scale) ** 2
    return sd.GaussianMixtureScore(
        sde, weights=jnp.array([0.8, 0.2]), means=means, covariances=covs
    )


# -- item 3 and 14: a score's dtype ------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.float16, jnp.bfloat16, jnp.complex64])
def test_score_of_another_dtype_is_refused(dtype):
    score = lambda t, x: (-x).astype(dtype)  # noqa: E731
    message = _raises_one_line(
        TypeError,
        "must return x's dtype, float32, but it returned",
        lambda: sd.sample(sd.VPSDE(), score, sd.ReverseSDE(num_steps=2), (2, 2), key=KEY),
    )
    assert jnp.dtype(dtype).name in message
    assert ("jnp.real" in message) == (dtype == jnp.complex64)


def test_complex_score_refused_by_log_prob():
    score = lambda t, x: (-x).astype(jnp.complex64)  # noqa: E731
    _raises_one_line(
        TypeError,
        "returned complex64: a score is the real gradient",
        lambda: sd.log_prob(sd.VPSDE(), score, np.zeros((2, 2)), num_steps=2),
    )


# -- item 4: noise drawn in at least float32 -----------------------------------------------


def test_bfloat16_noise_has_float32_resolution():
    sde = sd.VPSDE(1e-3, 1e-3)  # m(1) ~ 1, so x_1 = x0 + s z with x0 = 0 shows z
    x0 = jnp.zeros((20_000,), jnp.bfloat16)
    x_t = sde.marginal_sample(KEY, 1.0, x0)
    assert x_t.dtype == jnp.bfloat16
    z = np.asarray(x_t, np.float32) / float(sde.std(1.0))
    # bfloat16 draws: 128 distinct values, |z| <= 2.9. Normal tails: P(|z| > 3.5) ~ 5e-4,
    # so about 9 of 20000.
    assert len(np.unique(z)) > 1000
    assert np.abs(z).max() > 3.5
    assert abs(z.std() - 1) < 0.03


def test_objective_noise_target_stays_float32_for_bfloat16_data():
    x = jnp.zeros((10_000,), jnp.bfloat16)
    x_t, z, _ = perturb(sd.VPSDE(), jnp.asarray(0.5), x, KEY)
    assert x_t.dtype == jnp.bfloat16 and z.dtype == jnp.float32
    # float32 draws: a few coincidences among 10^4 (bfloat16 draws: 128 distinct values).
    assert len(np.unique(np.asarray(z))) > 9900


def test_float32_noise_unchanged():
    sde, x0 = sd.VPSDE(), jnp.ones((5, 3))
    expected = sde.mean_coeff(0.3) * x0 + sde.std(0.3) * jr.normal(KEY, x0.shape, x0.dtype)
    assert jnp.array_equal(sde.marginal_sample(KEY, 0.3, x0), expected)


# -- item 5: the model's SDE against the objective's --------------------------------------


@pytest.mark.parametrize(
    "model_sde, objective_sde",
    [(sd.VPSDE(), sd.VESDE()), (sd.VPSDE(), sd.VPSDE(0.1, 10.0)), (sd.VPSDE(), sd.SubVPSDE())],
)
def test_model_and_objective_on_different_sdes(model_sde, objective_sde):
    model = sd.NoisePrediction(lambda t, x: x, model_sde)
    objective = sd.DenoisingScoreMatching(objective_sde)
    message = _raises_one_line(
        ValueError,
        "is built on .* but DenoisingScoreMatching perturbs the data with",
        lambda: objective(model, jnp.ones((4, 2)), KEY),
    )
    assert sd._sde._base.describe(model_sde) in message
    assert sd._sde._base.describe(objective_sde) in message


def test_fit_refuses_model_on_another_sde_before_training():
    net = sd.nn.TimeMLP(2, width=8, key=KEY)
    model = sd.NoisePrediction(net, sd.VPSDE())
    fit = lambda objective: sd.fit(  # noqa: E731
        model,
        objective,
        np.ones((8, 2)),
        optimizer=optax.adam(1e-3),
        num_steps=1,
        batch_size=4,
        key=KEY,
        progress=False,
    )
    _raises_one_line(ValueError, r"VPSDE\(.*VESDE\(", lambda: fit(sd.MultiNoiseDSM(sd.VESDE(), 4)))
    # The same SDE built twice is the same SDE.
    assert np.isfinite(fit(sd.DenoisingScoreMatching(sd.VPSDE(0.1, 20.0))).losses).all()


@pytest.mark.parametrize(
    "call, name",
    [
        (
            lambda sde, score: sd.sample(sde, score, sd.ReverseSDE(num_steps=2), (2, 2), key=KEY),
            "sample",
        ),
        (lambda sde, score: sd.log_prob(sde, score, np.zeros((2, 2))), "log_prob"),
        (lambda sde, score: sd.encode(sde, score, np.zeros((2, 2))), "encode"),
    ],
)
def test_score_on_another_sde_than_the_call(call, name):
    score = _mixture(sd.VPSDE())
    _raises_one_line(
        ValueError,
        rf"is built on VPSDE\(beta_min=0.1, beta_max=20, T=1\), but {name}\(\) was given VESDE",
        lambda: call(sd.VESDE(), score),
    )


def test_langevin_without_sde_takes_any_score():
    score = _mixture(sd.VESDE(0.1, 10.0))
    x = sd.sample(None, score, sd.Langevin(num_steps=2, step_size=1e-3, t=0.5), (2, 2), key=KEY)
    assert x.shape == (2, 2)


# -- item 6: the prior against the marginal at T ------------------------------------------


def test_prior_mismatch_is_the_mean_conditional_kl():
    """The bound equals E_x0 KL(N(m x0, s^2 I) || N(0, p^2 I)) / d, computed per sample."""
    x0 = np.random.default_rng(0).normal(size=(50, 3)) * np.array([0.5, 2.0, 7.0])
    for sde in [sd.VPSDE(0.001, 3.0), sd.VESDE(0.1, 5.0), sd.SubVPSDE()]:
        T = float(sde.T)
        m, s, p = (float(v) for v in (sde.mean_coeff(T), sde.std(T), sde.prior_std))
        kl = 0.5 * (
            3 * s**2 / p**2 + np.sum((m * x0) ** 2, axis=1) / p**2 - 3 - 3 * math.log(s**2 / p**2)
        )
        assert sde.prior_mismatch(np.mean(x0**2)) == pytest.approx(kl.mean() / 3, rel=1e-5)


def test_prior_mismatch_warned_for_sde_that_keeps_the_data():
    with pytest.warns(sd.PriorMismatchWarning, match=r"VPSDE\(beta_min=1e-06.*beta_max"):
        _mixture(sd.VPSDE(1e-6, 1e-6))


def test_prior_mismatch_warned_for_data_far_too_large():
    x = np.random.default_rng(0).normal(size=(8, 2)) * 1e6
    with pytest.warns(sd.PriorMismatchWarning, match="rescale the data"):
        sd.fit(
            sd.nn.TimeMLP(2, width=8, key=KEY),
            sd.DenoisingScoreMatching(sd.VPSDE()),
            x,
            optimizer=optax.adam(1e-3),
            num_steps=1,
            batch_size=4,
            key=KEY,
            progress=False,
        )
    with pytest.warns(sd.PriorMismatchWarning, match="root mean square is 1e\\+06"):
        sd.log_prob(sd.VPSDE(), lambda t, x: -x, np.full((2, 2), 1e6), num_steps=2)
    with pytest.warns(sd.PriorMismatchWarning, match="sigma_max at least"):
        sd.EmpiricalScore(sd.VESDE(0.01, 1.0), data=x[:, :1] * 1e-4)


@pytest.mark.parametrize(
    "sde, scale",
    [
        (sd.VPSDE(), 3.0),
        (sd.VPSDE(0.001, 3.0), 1.0),
        (sd.VESDE(0.01, 50.0), 5.0),
        (sd.SubVPSDE(), 1.0),
    ],
)
def test_no_prior_warning_for_sound_settings(sde, scale):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _mixture(sde, scale)


def test_prior_warning_once_per_call_site():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            sd.warn_prior_mismatch(sd.VPSDE(), 1e8)
    assert len(caught) == 1 and caught[0].filename == __file__


# -- item 7: snapshots beyond the run ------------------------------------------------------


SAMPLERS = [
    sd.Langevin(num_steps=10, step_size=1e-2),
    sd.AnnealedLangevin(num_levels=2, steps_per_level=5, step_size=1e-3),
    sd.ReverseSDE(num_steps=10),
    sd.PredictorCorrector(num_steps=10),
    sd.EDMSampler(num_steps=10),
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize(
    "saveat, match",
    [
        (jnp.array([5.0, 5000.0]), "outside the run"),
        (jnp.array([NAN]), "must be finite"),
        (5000, "asks for 5000 snapshots, but .* has only 11 states"),
    ],
)
def test_snapshots_beyond_the_run_refused(sampler, saveat, match):
    _raises_one_line(
        ValueError,
        match,
        lambda: sd.sample(sd.VPSDE(), lambda t, x: -x, sampler, (2, 2), key=KEY, saveat=saveat),
    )


# -- item 8: the annealed ladder ends at sigma_min ----------------------------------------


def test_annealed_langevin_levels_end_at_sigma_min():
    sde = sd.VESDE(sigma_min=0.1, sigma_max=20.0)
    sampler = sd.AnnealedLangevin(num_levels=10, steps_per_level=50, step_size=0.3 * 0.1**2)
    sigmas = sde.std(sampler.level_times(sde))
    assert float(sigmas[-1]) == pytest.approx(0.1, rel=1e-5)
    assert float(sigmas[0]) == pytest.approx(20.0, rel=1e-4)
    # The objective trains on the same ladder by default.
    assert jnp.allclose(sd.MultiNoiseDSM(sde, 10).level_times(), sampler.level_times(sde))
    # NCSN's step rule alpha_i = eps sigma_i^2 / sigma_L^2 is stable on it (with the exact
    # std at default_eps, 0.001, alpha_1 was 1e4 times larger and the run ended in NaN).
    x = sd.sample(sde, _mixture(sde), sampler, (400, 2), key=KEY)
    assert abs(float(jnp.mean(x[:, 0] < 0)) - 0.8) < 0.07


def test_explicit_eps_and_other_sdes_keep_their_levels():
    sde = sd.VESDE(sigma_min=0.1, sigma_max=20.0)
    sampler = sd.AnnealedLangevin(num_levels=3, steps_per_level=1, step_size=1e-3, eps=1e-5)
    assert float(sampler.level_times(sde)[-1]) == pytest.approx(1e-5)
    vp = sd.VPSDE()
    assert vp.level_eps == vp.default_eps


def test_ladder_that_cannot_reach_sigma_min():
    sampler = sd.AnnealedLangevin(num_levels=3, steps_per_level=1, step_size=1e-3)
    _raises_one_line(ValueError, "pass `eps=`", lambda: sampler.check(sd.VESDE(1.0, 1.2)))


# -- item 12: finite hyperparameters and grids --------------------------------------------


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: sd.VPSDE(beta_max=INF), "beta_max"),
        (lambda: sd.VPSDE(beta_min=NAN), "beta_min"),
        (lambda: sd.SubVPSDE(T=INF), "T"),
        (lambda: sd.VESDE(sigma_max=INF), "sigma_max"),
        (lambda: sd.VESDE(sigma_min=NAN), "sigma_min"),
        (lambda: sd.Langevin(num_steps=5, step_size=INF), "step_size"),
        (lambda: sd.Langevin(num_steps=5, step_size=0.1, init_uniform=(-INF, 1.0)), "init_uniform"),
        (lambda: sd.AnnealedLangevin(num_levels=2, steps_per_level=2, step_size=NAN), "step_size"),
        (lambda: sd.PredictorCorrector(snr=INF), "snr"),
        (lambda: sd.EDMSampler(s_churn=INF), "s_churn"),
        (lambda: sd.EDMGrid(rho=INF), "rho"),
        (lambda: sd.LinearObservation(jnp.eye(2), noise_std=INF), "noise_std"),
    ],
)
def test_non_finite_hyperparameters_refused(build, name):
    _raises_one_line(ValueError, f"`{name}` must be a finite number", build)


@pytest.mark.parametrize("grid", [sd.EDMGrid(), sd.LogSNRGrid()], ids=lambda g: type(g).__name__)
def test_grid_overflowing_float32_named(grid):
    sde = sd.VPSDE(beta_max=1000.0)
    sampler = sd.ProbabilityFlowODE(num_steps=50, grid=grid)
    message = _raises_one_line(
        ValueError,
        f"{type(grid).__name__} with 50 steps on VPSDE\\(beta_min=0.1, beta_max=1000, T=1\\) "
        "gives 49 of 51 step times NaN or inf: .* noise-to-signal ratio",
        lambda: sd.sample(sde, lambda t, x: -x, sampler, (2, 2), key=KEY),
    )
    assert "UniformGrid()" in message
    _raises_one_line(
        ValueError,
        "noise-to-signal ratio",
        lambda: sd.encode(sde, lambda t, x: -x, np.zeros((2, 2)), num_steps=50, grid=grid),
    )
    sd.ProbabilityFlowODE(num_steps=50).check(sde)  # uniform in t: fine


# -- item 14: empty inputs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda x: sd.log_prob(sd.VPSDE(), lambda t, x: -x, x),
        lambda x: sd.bits_per_dim(sd.VPSDE(), lambda t, x: -x, x, key=KEY),
        lambda x: sd.encode(sd.VPSDE(), lambda t, x: -x, x),
        lambda x: sd.fit(
            sd.nn.TimeMLP(2, width=8, key=KEY),
            sd.DenoisingScoreMatching(sd.VPSDE()),
            x,
            optimizer=optax.adam(1e-3),
            num_steps=1,
            batch_size=1,
            key=KEY,
            progress=False,
        ),
    ],
    ids=["log_prob", "bits_per_dim", "encode", "fit"],
)
def test_empty_inputs_refused(call):
    _raises_one_line(ValueError, r"is empty \(shape \(0, 2\)\)", lambda: call(np.zeros((0, 2))))


@pytest.mark.parametrize(
    "args, error, match",
    [
        (("vp", 1.0), TypeError, r"`sde` must be an SDE"),
        ((sd.VPSDE(), float("nan")), ValueError, r"`mean_square` must be a finite number >= 0"),
        ((sd.VPSDE(), -1.0), ValueError, r"`mean_square` must be a finite number >= 0"),
        ((sd.VPSDE(), np.ones(3)), ValueError, r"`mean_square` must be a finite number >= 0"),
    ],
    ids=["sde", "nan", "negative", "array"],
)
def test_warn_prior_mismatch_refuses_bad_arguments(args, error, match):
    _raises_one_line(error, match, lambda: sd.warn_prior_mismatch(*args))
