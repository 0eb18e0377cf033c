"""An SDE's schedule constants are never trained: gradients through them are exactly zero,
while gradients in time, space and the network's parameters are untouched."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scoresde as sd


SDES = {
    "vp": lambda: sd.VPSDE(beta_min=0.1, beta_max=20.0),
    "subvp": lambda: sd.SubVPSDE(beta_min=0.1, beta_max=20.0),
    "ve": lambda: sd.VESDE(sigma_min=0.01, sigma_max=50.0),
}
PARAMETERISATIONS = {
    "noise_prediction": sd.NoisePrediction,
    "edm": sd.EDMDenoiser,
}


def _sde_leaves(sde):
    return jax.tree.leaves(eqx.filter(sde, eqx.is_array))


@pytest.mark.parametrize("parameterisation", PARAMETERISATIONS, ids=str)
@pytest.mark.parametrize("name", SDES, ids=str)
def test_dsm_gradient_of_a_model_is_zero_for_its_sde(name, parameterisation):
    sde = SDES[name]()
    net = sd.nn.TimeMLP(2, width=16, key=jr.key(0))
    model = PARAMETERISATIONS[parameterisation](net, sde)
    objective = sd.DenoisingScoreMatching(sde)
    batch = 2.0 * jr.normal(jr.key(1), (64, 2))

    grads = eqx.filter_grad(lambda m: objective(m, batch, jr.key(2)))(model)

    sde_leaves = _sde_leaves(grads.sde)
    assert len(sde_leaves) == 3  # two schedule constants and T
    for leaf in sde_leaves:
        assert float(leaf) == 0.0
    net_norm = sum(
        float(jnp.sum(g**2)) for g in jax.tree.leaves(eqx.filter(grads.net, eqx.is_array))
    )
    assert np.isfinite(net_norm) and net_norm > 0


def test_grad_through_the_constructor_is_zero():
    assert float(jax.grad(lambda b: sd.VPSDE(0.1, b).std(0.5))(20.0)) == 0.0
    assert float(jax.grad(lambda s: sd.VESDE(0.01, s).std(0.5))(50.0)) == 0.0
    assert float(jax.grad(lambda T: sd.SubVPSDE(0.1, 20.0, T).mean_coeff(0.5))(1.0)) == 0.0


def _methods(sde):
    """Every public scalar-valued use of the SDE's constants, as functions of the SDE."""
    x = jnp.array([0.3, -1.2])
    t = 0.4
    score = lambda t, x: -x
    calls = {
        "drift": lambda s: jnp.sum(s.drift(t, x)),
        "diffusion": lambda s: s.diffusion(t),
        "mean_coeff": lambda s: s.mean_coeff(t),
        "std": lambda s: s.std(t),
        "sigma": lambda s: s.sigma(t),
        "log_snr": lambda s: s.log_snr(t),
        "t_from_sigma": lambda s: s.t_from_sigma(0.7),
        "prior_std": lambda s: s.prior_std,
        "prior_log_prob": lambda s: s.prior_log_prob(x),
        "prior_sample": lambda s: jnp.sum(s.prior_sample(jr.key(0), (2,))),
        "marginal_sample": lambda s: jnp.sum(s.marginal_sample(jr.key(0), t, x)),
        "discretize": lambda s: jnp.sum(s.discretize(t, 0.01, x)[0]) + s.discretize(t, 0.01, x)[1],
        "reverse_drift": lambda s: jnp.sum(s.reverse_drift(score, t, x)),
        "probability_flow_drift": lambda s: jnp.sum(s.probability_flow_drift(score, t, x)),
    }
    if isinstance(sde, sd.VESDE):
        calls["noise_level"] = lambda s: s.noise_level(t)
    else:
        calls["beta"] = lambda s: s.beta(t)
        calls["integrated_beta"] = lambda s: s.integrated_beta(t)
        calls["t_from_integrated_beta"] = lambda s: s.t_from_integrated_beta(0.5)
    return calls


@pytest.mark.parametrize("name", SDES, ids=str)
def test_every_method_has_zero_gradient_in_the_constants(name):
    sde = SDES[name]()
    for method, fn in _methods(sde).items():
        value = fn(sde)
        assert np.isfinite(float(value)), method
        grads = eqx.filter_grad(fn)(sde)
        for leaf in _sde_leaves(grads):
            assert float(leaf) == 0.0, method


@pytest.mark.parametrize("name", SDES, ids=str)
def test_gradients_in_time_and_space_are_kept(name):
    sde = SDES[name]()
    assert float(jax.grad(sde.std)(0.5)) > 0
    assert float(jax.grad(sde.diffusion)(0.5)) != 0
    assert float(jax.grad(sde.t_from_sigma)(0.7)) > 0
    x = jnp.array([0.3, -1.2])
    dx = jax.grad(sde.prior_log_prob)(x)
    np.testing.assert_allclose(dx, -x / float(sde.prior_std) ** 2, rtol=1e-5)


def test_constants_stay_array_leaves_and_do_not_recompile():
    sde = sd.VPSDE(0.1, 20.0)
    assert isinstance(sde.beta_max, jax.Array) and float(sde.beta_max) == 20.0
    traces = []

    @eqx.filter_jit
    def std(sde, t):
        traces.append(None)
        return sde.std(t)

    a = std(sde, 0.5)
    other = sd.VPSDE(0.1, 10.0)
    b = std(other, 0.5)
    assert len(traces) == 1
    assert float(a) != float(b)
    np.testing.assert_allclose(b, other.std(0.5), rtol=1e-6)


def test_grad_through_tree_at_replacing_a_leaf_is_zero():
    sde = sd.VESDE(0.01, 50.0)
    f = lambda s_max: eqx.tree_at(lambda s: s.sigma_max, sde, s_max).std(0.5)
    assert float(jax.grad(f)(jnp.asarray(50.0))) == 0.0


def test_a_hand_written_training_loop_leaves_the_sde_unchanged():
    sde = sd.VPSDE(0.1, 20.0)
    model = sd.NoisePrediction(sd.nn.TimeMLP(2, width=16, key=jr.key(0)), sde)
    objective = sd.DenoisingScoreMatching(sde)
    data = jr.normal(jr.key(1), (64, 2))
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, opt_state, key):
        loss, grads = eqx.filter_value_and_grad(lambda m: objective(m, data, key))(model)
        updates, opt_state = optimizer.update(grads, opt_state)
        return eqx.apply_updates(model, updates), opt_state, loss

    for i in range(5):
        model, opt_state, _ = step(model, opt_state, jr.key(i))
    for before, after in zip(_sde_leaves(sde), _sde_leaves(model.sde), strict=True):
        assert float(after) == float(before)


def test_fit_still_trains_the_network_and_not_the_sde():
    sde = sd.VPSDE(0.1, 20.0)
    model = sd.NoisePrediction(sd.nn.TimeMLP(2, width=16, key=jr.key(0)), sde)
    data = jr.normal(jr.key(1), (128, 2))
    result = sd.fit(
        model,
        sd.DenoisingScoreMatching(sde),
        data,
        optimizer=optax.adam(1e-2),
        num_steps=20,
        batch_size=32,
        key=jr.key(2),
        progress=False,
    )
    assert np.all(np.isfinite(result.losses))
    for before, after in zip(_sde_leaves(sde), _sde_leaves(result.model.sde), strict=True):
        assert float(after) == float(before)
    moved = jax.tree.leaves(
        jax.tree.map(
            lambda a, b: bool(jnp.any(a != b)),
            eqx.filter(model.net, eqx.is_array),
            eqx.filter(result.raw_model.net, eqx.is_array),
        )
    )
    assert any(moved)
