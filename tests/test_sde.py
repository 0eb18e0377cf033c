"""The SDEs: closed-form kernels against Diffrax simulation, noise-level inverses, errors."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import scoresde as sd


SDES = {
    "vp": sd.VPSDE(beta_min=0.1, beta_max=20.0),
    "subvp": sd.SubVPSDE(beta_min=0.1, beta_max=20.0),
    "ve": sd.VESDE(sigma_min=0.01, sigma_max=50.0),
    "ou_tutorial": sd.VPSDE(beta_min=0.001, beta_max=3.0),
}


@pytest.mark.parametrize("name", list(SDES))
def test_forward_sde_matches_closed_form_marginals(name):
    """Simulate dx = f dt + g dW through Diffrax's terms; compare mean and std with m(t) x0
    and s(t) at several times. Heun (= Itô here: additive noise) with 1000 steps makes the
    discretisation bias O(dt^2), far below the Monte Carlo error of 10^4 paths."""
    sde = SDES[name]
    x0 = jnp.array([1.0, -2.0])
    save = jnp.array([0.05, 0.2, 0.5, 1.0])
    grid = jnp.linspace(0.0, 1.0, 1001)

    def one(key):
        path = sd.GridBrownianPath(grid, (2,), key)
        sol = dfx.diffeqsolve(
            sde.forward_terms(path),
            dfx.Heun(),
            0.0,
            1.0,
            None,
            x0,
            saveat=dfx.SaveAt(ts=save),
            stepsize_controller=dfx.StepTo(ts=grid),
            max_steps=1000,
        )
        return sol.ys

    n = 10_000
    ys = np.asarray(jax.jit(jax.vmap(one))(jr.split(jr.PRNGKey(0), n)), dtype=np.float64)
    for j, t in enumerate(np.asarray(save)):
        m, s = float(sde.mean_coeff(t)), float(sde.std(t))
        sample_mean, sample_std = ys[:, j].mean(0), ys[:, j].std(0)
        np.testing.assert_array_less(np.abs(sample_mean - m * np.asarray(x0)), 4 * s / np.sqrt(n))
        # The SE of a Gaussian sample std is s / sqrt(2n).
        np.testing.assert_array_less(np.abs(sample_std - s), 4 * s / np.sqrt(2 * n))


@pytest.mark.parametrize("name", list(SDES))
def test_t_from_sigma_inverts_sigma(name):
    sde = SDES[name]
    t = jnp.linspace(0.01, 1.0, 50)
    np.testing.assert_allclose(sde.t_from_sigma(sde.sigma(t)), t, rtol=2e-4, atol=1e-6)
    lam = sde.log_snr(t)
    assert jnp.all(jnp.diff(lam) < 0), "log-SNR must decrease in t"


@pytest.mark.parametrize("name", list(SDES))
def test_discretize_is_the_exact_transition(name):
    """For a linear SDE the transition from s to t is N(r x, s_t^2 - r^2 s_s^2), r = m_t/m_s:
    composing it with the kernel at s must give the kernel at t."""
    sde = SDES[name]
    t, dt = 0.6, 0.1
    x = jnp.array([1.0, -1.0])
    F, G = sde.discretize(t, dt, x)
    ratio = sde.mean_coeff(t) / sde.mean_coeff(t - dt)
    np.testing.assert_allclose(F, (ratio - 1) * x, rtol=1e-5)
    np.testing.assert_allclose(G**2 + ratio**2 * sde.std(t - dt) ** 2, sde.std(t) ** 2, rtol=1e-5)


def test_prior_log_prob_is_gaussian():
    sde = sd.VESDE(sigma_min=0.1, sigma_max=3.0)
    x = jnp.array([0.5, -1.0, 2.0])
    expected = jax.scipy.stats.norm.logpdf(x, scale=3.0).sum()
    np.testing.assert_allclose(sde.prior_log_prob(x), expected, rtol=1e-6)


def test_ou_of_the_sgm_from_scratch_tutorial():
    """The SGM-from-scratch tutorial's OU process: m_t = exp(-alpha_t / 2),
    v_t = 1 - exp(-alpha_t), alpha_t = t beta_min + t^2 (beta_max - beta_min) / 2."""
    sde = sd.VPSDE(beta_min=0.001, beta_max=3)
    t = 0.7
    alpha = t * 0.001 + 0.5 * t**2 * (3 - 0.001)
    np.testing.assert_allclose(sde.mean_coeff(t), np.exp(-alpha / 2), rtol=1e-6)
    np.testing.assert_allclose(sde.std(t) ** 2, 1 - np.exp(-alpha), rtol=1e-6)
    np.testing.assert_allclose(sde.drift(t, jnp.ones(2)), -0.5 * sde.beta(t) * jnp.ones(2))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sd.VPSDE(beta_min=-0.1, beta_max=20.0), "beta_min"),
        (lambda: sd.VPSDE(beta_min=5.0, beta_max=1.0), "beta_max"),
        (lambda: sd.SubVPSDE(beta_min=-1.0, beta_max=1.0), "beta_min"),
        (lambda: sd.VESDE(sigma_min=0.0, sigma_max=1.0), "sigma_min"),
        (lambda: sd.VESDE(sigma_min=2.0, sigma_max=2.0), "sigma_max"),
        (lambda: sd.VPSDE(T=0.0), "T"),
        (lambda: sd.VPSDE(beta_min="a"), "beta_min"),
    ],
)
def test_invalid_hyperparameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_grid_brownian_path_rejects_off_grid_queries():
    path = sd.GridBrownianPath(jnp.linspace(0.0, 1.0, 11), (2,), jr.PRNGKey(0))
    np.testing.assert_allclose(path.evaluate(0.1, 0.2), path.increment(1))
    with pytest.raises(Exception, match="not one step of its grid"):
        jax.block_until_ready(path.evaluate(0.1, 0.15))
    with pytest.raises(ValueError, match="point"):
        path.evaluate(0.1)


def test_grid_brownian_path_increments_are_standard_normal():
    ts = jnp.linspace(0.0, 2.0, 5)
    keys = jr.split(jr.PRNGKey(3), 20_000)
    incs = jax.vmap(lambda k: sd.GridBrownianPath(ts, (), k).increment(2))(keys)
    n, sd_true = incs.shape[0], float(jnp.sqrt(0.5))
    assert abs(float(incs.mean())) < 4 * sd_true / np.sqrt(n)
    assert abs(float(incs.std()) - sd_true) < 4 * sd_true / np.sqrt(2 * n)
