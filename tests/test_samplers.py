"""Every sampler, proven on exact scores (no network involved)."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import assert_moments_match

import scoresde as sd


N = 10_000

MIXTURE_SAMPLERS = {
    "reverse_sde_euler": sd.ReverseSDE(dfx.Euler(), num_steps=500),
    "reverse_sde_heun": sd.ReverseSDE(dfx.Heun(), num_steps=200),
    "reverse_sde_adaptive": sd.ReverseSDE(
        dfx.Heun(), stepsize_controller=dfx.PIDController(rtol=1e-2, atol=1e-2), brownian_tol=2**-10
    ),
    "pf_ode_adaptive": sd.ProbabilityFlowODE(
        dfx.Tsit5(), stepsize_controller=dfx.PIDController(rtol=1e-5, atol=1e-5)
    ),
    "pf_ode_heun": sd.ProbabilityFlowODE(dfx.Heun(), num_steps=50),
    "predictor_corrector": sd.PredictorCorrector(num_steps=300, snr=0.16),
}


@pytest.mark.parametrize("name", list(MIXTURE_SAMPLERS))
def test_sampler_reproduces_mixture(name, vp, mixture):
    """Exact score of a 3-component 2-D mixture with unequal weights: weights, mean and
    covariance of 10^4 samples within 4 standard errors. VP(0.1, 20) makes p_T = N(0, I)
    up to m(T) = e^-5 (a KL of 2e-4 nats), and the step counts keep the discretisation
    bias well below one standard error."""
    w, mu, cov = mixture
    score = sd.GaussianMixtureScore(vp, weights=w, means=mu, covariances=cov)
    x = sd.sample(vp, score, MIXTURE_SAMPLERS[name], (N, 2), key=jr.PRNGKey(0))
    assert x.shape == (N, 2)
    assert_moments_match(x, w, mu, cov, score)


def test_edm_and_log_snr_grids_sample_correctly(vp, mixture):
    w, mu, cov = mixture
    score = sd.GaussianMixtureScore(vp, weights=w, means=mu, covariances=cov)
    for grid in (sd.EDMGrid(rho=7.0), sd.LogSNRGrid()):
        sampler = sd.ReverseSDE(dfx.Heun(), num_steps=200, grid=grid)
        x = sd.sample(vp, score, sampler, (N, 2), key=jr.PRNGKey(1))
        assert_moments_match(x, w, mu, cov, score)


def _seed_002():
    sde = sd.VESDE(sigma_min=0.01, sigma_max=20.0)
    score = sd.GaussianMixtureScore(
        sde,
        weights=jnp.array([0.95, 0.05]),
        means=jnp.array([[-5.0, -5.0], [5.0, 5.0]]),
        covariances=jnp.stack([jnp.eye(2), jnp.eye(2)]),
    )
    return sde, score


def _weight_of_first_mode(score, x):
    return float(jax.vmap(lambda y: score.responsibilities(0.0, y))(x)[:, 0].mean())


def test_seed_002_plain_langevin_keeps_the_initial_split():
    """The NCSN toy-example tutorial: from uniform on [-8, 8]^2, Langevin with the exact score
    cannot cross the
    low-density gap, so the modes keep the initial split (about 1/2), not 0.95/0.05."""
    sde, score = _seed_002()
    sampler = sd.Langevin(num_steps=1000, step_size=0.01, init_uniform=(-8.0, 8.0))
    out = sd.sample(sde, score, sampler, (N, 2), key=jr.PRNGKey(0), saveat=2, return_info=True)
    initial = _weight_of_first_mode(score, out.trajectory[:, 0])
    final = _weight_of_first_mode(score, out.samples)
    # Points right on the diagonal can still cross; the split moves by a few percent at most.
    assert abs(final - initial) < 0.05
    assert abs(final - 0.95) > 0.3


def test_seed_002_annealed_langevin_recovers_the_weights():
    """Annealed Langevin from sigma = 20 down to sigma_L = 0.1 recovers 0.95/0.05 within
    0.02 (the Monte Carlo SE of the weight at n = 10^4 is 0.002)."""
    sde, score = _seed_002()
    sampler = sd.AnnealedLangevin(
        num_levels=10,
        steps_per_level=100,
        step_size=2e-3,
        eps=float(sde.t_from_sigma(0.1)),
        init_uniform=(-8.0, 8.0),
    )
    x = sd.sample(sde, score, sampler, (N, 2), key=jr.PRNGKey(0))
    assert abs(_weight_of_first_mode(score, x) - 0.95) < 0.02


def test_seed_000_memorisation():
    """The SGM-from-scratch tutorial: the reverse SDE with the exact score of 8 points on the
    circle puts >= 99%
    of samples within 0.05 of a training point, each point getting 1/8 (by the 8-fold
    symmetry) within 4 binomial standard errors."""
    sde = sd.VPSDE(beta_min=0.001, beta_max=3)
    angles = jnp.linspace(0, 2 * jnp.pi * (1 - 1 / 8), 8)
    data = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)
    score = sd.EmpiricalScore(sde, data=data)
    x = sd.sample(sde, score, sd.ReverseSDE(dfx.Euler(), num_steps=1000), (N, 2), key=jr.PRNGKey(0))
    dist = jnp.linalg.norm(x[:, None, :] - data[None], axis=-1)
    assert float((dist.min(1) < 0.05).mean()) >= 0.99
    counts = np.bincount(np.asarray(dist.argmin(1)), minlength=8) / N
    se = np.sqrt((1 / 8) * (7 / 8) / N)
    np.testing.assert_array_less(np.abs(counts - 1 / 8), 4 * se)


def test_euler_equals_hand_written_euler_maruyama(vp, mixture):
    """The Diffrax reverse-SDE Euler sampler, step by step, is the hand-written loop
    x <- x + [f - g^2 s] dt + g dW fed the same increments, to float32 round-off."""
    w, mu, cov = mixture
    score = sd.GaussianMixtureScore(vp, weights=w, means=mu, covariances=cov)
    steps, n, key = 200, 64, jr.PRNGKey(7)
    x_lib = sd.sample(vp, score, sd.ReverseSDE(dfx.Euler(), num_steps=steps), (n, 2), key=key)

    ts = jnp.linspace(vp.T, vp.default_eps, steps + 1)

    def hand(i):
        key_prior, key_path = jr.split(jr.fold_in(key, i))
        x = vp.prior_sample(key_prior, (2,))
        path = sd.GridBrownianPath(ts[::-1], (2,), key_path)

        def step(k, x):
            t, dt = ts[k], ts[k + 1] - ts[k]
            dw = -path.increment(steps - 1 - k)  # W(t_{k+1}) - W(t_k), going down in time
            g = vp.diffusion(t)
            return x + (vp.drift(t, x) - g**2 * score(t, x)) * dt + g * dw

        return jax.lax.fori_loop(0, steps, step, x)

    x_hand = jax.jit(jax.vmap(hand))(jnp.arange(n))
    np.testing.assert_allclose(x_lib, x_hand, rtol=1e-5, atol=1e-5)


def test_tweedie_denoising_moves_to_the_posterior_mean():
    """With denoise=True the last step is E[x0 | x_eps]: for data concentrated on 8 points
    and a large eps the denoised samples sit much closer to the points."""
    sde = sd.VPSDE(beta_min=0.001, beta_max=3)
    angles = jnp.linspace(0, 2 * jnp.pi * (1 - 1 / 8), 8)
    data = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)
    score = sd.EmpiricalScore(sde, data=data)
    key = jr.PRNGKey(2)
    kw = dict(num_steps=200, eps=0.05)
    noisy = sd.sample(sde, score, sd.ReverseSDE(**kw), (2000, 2), key=key)
    clean = sd.sample(sde, score, sd.ReverseSDE(**kw, denoise=True), (2000, 2), key=key)

    def err(x):
        return float(jnp.linalg.norm(x[:, None] - data[None], axis=-1).min(1).mean())

    assert err(clean) < 0.2 * err(noisy)


@pytest.mark.parametrize(
    "sampler",
    [
        sd.ReverseSDE(dfx.Euler(), num_steps=20),
        sd.ReverseSDE(dfx.Heun(), stepsize_controller=dfx.PIDController(rtol=1e-2, atol=1e-2)),
        sd.ProbabilityFlowODE(dfx.Heun(), num_steps=20),
        sd.Langevin(num_steps=20, step_size=1e-5),
        sd.AnnealedLangevin(num_levels=3, steps_per_level=5, step_size=1e-4),
        sd.PredictorCorrector(sd.EulerMaruyamaPredictor(), num_steps=20, denoise=True),
    ],
    ids=lambda s: type(s).__name__,
)
def test_samplers_work_on_images(sampler):
    data = jr.uniform(jr.PRNGKey(0), (5, 3, 4, 4))
    sde = sd.VPSDE()
    x = sd.sample(sde, sd.EmpiricalScore(sde, data=data), sampler, (4, 3, 4, 4), key=jr.PRNGKey(1))
    assert x.shape == (4, 3, 4, 4)
    assert bool(jnp.all(jnp.isfinite(x)))


def test_srk_solvers_are_refused_in_reverse_time(vp):
    """Diffrax 0.7's SRK solvers integrate forward even when t1 < t0; refuse them loudly."""
    with pytest.raises(ValueError, match="reverse-time"):
        sd.sample(
            vp, lambda t, x: -x, sd.ReverseSDE(dfx.SRA1(), num_steps=10), (2, 2), key=jr.PRNGKey(0)
        )
