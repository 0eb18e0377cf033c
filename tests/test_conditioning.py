"""Conditioning: class-conditional sampling with exact scores, classifier-free guidance,
conditional log-likelihoods and training, and the errors of a misused condition."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from conftest import assert_moments_match, mixture_params

import scoresde as sd
from scoresde._sampler._sample import _sample_jit


K = 3  # classes of the mixture; K is the null label


def _exact(sde):
    w, mu, cov = mixture_params()
    return sd.GaussianMixtureScore(sde, weights=w, means=mu, covariances=cov)


def _component_at(exact, c, t):
    """Component c of p_t as a one-component mixture: the exact law of class c at time t."""
    m, s = exact.sde.mean_coeff(t), exact.sde.std(t)
    mean = m * exact.means[c]
    cov = m**2 * exact.covariances[c] + s**2 * jnp.eye(2)
    return jnp.ones(1), mean[None], cov[None]


VP = sd.VPSDE(0.1, 20.0)
VE = sd.VESDE(sigma_min=0.01, sigma_max=10.0)
# The last annealed level sits at s(t) = 0.05, where one Langevin step of size 2e-3 biases a
# component's variance by a relative alpha / (4 var) < 0.3 %, under a tenth of its standard
# error at 4000 samples.
ANNEALED_EPS = float(VE.t_from_sigma(0.05))
SAMPLERS = {
    "reverse_sde_euler": (VP, sd.ReverseSDE(dfx.Euler(), num_steps=500)),
    "reverse_sde_heun": (VP, sd.ReverseSDE(dfx.Heun(), num_steps=200)),
    "pf_ode_adaptive": (VP, sd.ProbabilityFlowODE()),
    "predictor_corrector": (VP, sd.PredictorCorrector(num_steps=300)),
    "annealed_langevin_ve": (
        VE,
        sd.AnnealedLangevin(num_levels=20, steps_per_level=50, step_size=2e-3, eps=ANNEALED_EPS),
    ),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_draws_each_class_and_the_null_label(name):
    """Labels 0, 1, 2 in one batch of 12,000: each class matches its component at eps in
    weight, mean and covariance within 4 standard errors; 8,000 null labels in the same
    batch reproduce the mixture's weights within 0.02 (about 3.5 standard errors)."""
    sde, sampler = SAMPLERS[name]
    exact = _exact(sde)
    cond = exact.class_conditional()
    labels = jnp.concatenate([jnp.arange(12_000) % K, jnp.full(8_000, K)])
    x = sd.sample(sde, cond, sampler, (labels.shape[0], 2), key=jr.key(0), condition=labels)
    eps = float(sampler.eps if sampler.eps is not None else sde.default_eps)
    x, labels = np.asarray(x), np.asarray(labels)
    for c in range(K):
        w, mu, cov = _component_at(exact, c, eps)
        one = sd.GaussianMixtureScore(sde, weights=w, means=mu, covariances=cov)
        assert_moments_match(x[labels == c], w, mu, cov, one)
    null = x[labels == K]
    resp = jax.vmap(lambda y: exact.responsibilities(eps, y))(jnp.asarray(null))
    np.testing.assert_allclose(resp.mean(0), exact.weights, atol=0.02)


def test_exact_class_conditional_is_the_component_and_null_is_the_mixture():
    exact = _exact(VP)
    cond = exact.class_conditional()
    assert cond.num_classes == K and cond.null_condition == K
    x, t = jnp.array([0.3, -0.7]), 0.4
    for c in range(K):
        w, mu, cov = _component_at(exact, c, 0.0)
        one = sd.GaussianMixtureScore(VP, weights=w, means=mu, covariances=cov)
        np.testing.assert_allclose(cond(t, x, c), one(t, x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cond.log_prob(t, x, c), one.log_prob(t, x), rtol=1e-6)
    np.testing.assert_allclose(cond(t, x, K), exact(t, x), rtol=1e-6)
    np.testing.assert_allclose(cond.log_prob(t, x, K), exact.log_prob(t, x), rtol=1e-6)
    # Bayes: sum_c w_c p(x | c) = p(x).
    lp = jnp.stack([cond.log_prob(t, x, c) for c in range(K)])
    np.testing.assert_allclose(
        jax.nn.logsumexp(lp + jnp.log(exact.weights)), exact.log_prob(t, x), rtol=1e-6
    )


def test_exact_class_conditional_samples_are_the_components():
    exact = _exact(VP)
    cond = exact.class_conditional()
    labels = jnp.arange(9000) % K
    x = np.asarray(cond.sample(jr.key(0), labels, t=0.0))
    for c in range(K):
        w, mu, cov = _component_at(exact, c, 0.0)
        one = sd.GaussianMixtureScore(VP, weights=w, means=mu, covariances=cov)
        assert_moments_match(x[np.asarray(labels) == c], w, mu, cov, one)


# -- classifier-free guidance ------------------------------------------------------------


def test_guidance_scale_zero_is_the_conditional_score():
    cond = _exact(VP).class_conditional()
    guided = sd.ClassifierFreeGuidance(cond, scale=0.0, null_condition=K)
    labels = jnp.arange(300) % K
    sampler = sd.ReverseSDE(num_steps=100)
    a = sd.sample(VP, cond, sampler, (300, 2), key=jr.key(1), condition=labels)
    b = sd.sample(VP, guided, sampler, (300, 2), key=jr.key(1), condition=labels)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_guidance_makes_samples_more_typical_of_their_class():
    """Overlapping components: the fraction of label-c samples that the exact mixture
    assigns to component c rises with the scale (0, 1, 4); each step is far beyond the
    binomial standard error (< 0.006 at 6000 samples)."""
    means = jnp.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.2]])
    exact = sd.GaussianMixtureScore(
        VP, weights=jnp.ones(3) / 3, means=means, covariances=jnp.stack([0.6 * jnp.eye(2)] * 3)
    )
    cond = exact.class_conditional()
    labels = jnp.arange(6000) % K
    fractions = []
    for scale in (0.0, 1.0, 4.0):
        guided = sd.ClassifierFreeGuidance(cond, scale=scale, null_condition=K)
        x = sd.sample(
            VP, guided, sd.ReverseSDE(num_steps=200), (6000, 2), key=jr.key(2), condition=labels
        )
        resp = jax.vmap(lambda y: exact.responsibilities(0.0, y))(x)
        fractions.append(float(jnp.mean(jnp.argmax(resp, axis=1) == labels)))
    assert fractions[0] + 0.03 < fractions[1] and fractions[1] + 0.03 < fractions[2], fractions


def test_guidance_scale_is_a_leaf_and_does_not_recompile():
    cond = _exact(VP).class_conditional()
    labels = jnp.arange(8) % K
    sampler = sd.ReverseSDE(num_steps=13)
    before = eqx.debug.get_num_traces(_sample_jit)
    for scale in (0.5, 2.0):
        guided = sd.ClassifierFreeGuidance(cond, scale=scale, null_condition=K)
        sd.sample(VP, guided, sampler, (8, 2), key=jr.key(0), condition=labels)
    sd.sample(VP, guided, sampler, (8, 2), key=jr.key(0), condition=(labels + 1) % K)
    assert eqx.debug.get_num_traces(_sample_jit) - before == 1


# -- the condition path: reproducibility, saveat, log_prob --------------------------------


def test_sample_i_depends_only_on_key_i_and_its_own_condition():
    cond = _exact(VP).class_conditional()
    sampler = sd.ReverseSDE(num_steps=50)
    labels = jnp.arange(1000) % (K + 1)
    many = sd.sample(VP, cond, sampler, (1000, 2), key=jr.key(3), condition=labels)
    few = sd.sample(VP, cond, sampler, (10, 2), key=jr.key(3), condition=labels[:10])
    np.testing.assert_allclose(many[:10], few, rtol=1e-6, atol=1e-6)
    changed = sd.sample(
        VP, cond, sampler, (10, 2), key=jr.key(3), condition=labels[:10].at[4].set(2)
    )
    np.testing.assert_array_equal(np.delete(changed, 4, 0), np.delete(few, 4, 0))
    assert not np.allclose(changed[4], few[4])


def test_condition_can_be_any_pytree_and_works_with_saveat():
    def score(t, x, c):
        return -(x - c["shift"] * c["scale"][0])

    cond = {"shift": jnp.ones((6, 2)), "scale": jnp.arange(6.0)[:, None]}
    out = sd.sample(
        VP,
        score,
        sd.ReverseSDE(num_steps=30),
        (6, 2),
        key=jr.key(0),
        condition=cond,
        saveat=3,
        return_info=True,
    )
    assert out.trajectory.shape == (6, 3, 2) and out.samples.shape == (6, 2)
    np.testing.assert_allclose(out.trajectory[:, -1], out.samples, rtol=1e-5, atol=1e-5)


def test_conditional_log_prob_matches_each_component():
    exact = _exact(VP)
    cond = exact.class_conditional()
    labels = jnp.arange(150) % K
    x = cond.sample(jr.key(4), labels, t=VP.default_eps)
    lp = sd.log_prob(VP, cond, x, condition=labels)
    truth = jax.vmap(lambda y, c: cond.log_prob(VP.default_eps, y, c))(x, labels)
    assert float(jnp.mean(jnp.abs(lp - truth))) < 0.02


# -- training ---------------------------------------------------------------------------


def _labelled_mixture(n, key):
    """Three well-separated classes with weights 0.5/0.3/0.2."""
    means = jnp.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    exact = sd.GaussianMixtureScore(
        VP,
        weights=jnp.array([0.5, 0.3, 0.2]),
        means=means,
        covariances=jnp.stack([0.25 * jnp.eye(2)] * 3),
    )
    key_c, key_x = jr.split(key)
    labels = jr.choice(key_c, 3, (n,), p=exact.weights)
    return exact, exact.sample_components(key_x, labels), labels


def test_trained_conditional_mlp_samples_each_class_and_the_mixture():
    """A conditional TimeMLP trained with label dropout 0.1. Per-class means within 0.15
    of the truth: the components have std 0.5 and sit 3 apart, so 0.15 is 0.3 std, far
    above the Monte Carlo error (0.01) and far below what a model ignoring the label gives
    (3). The null label's share of each mode within 0.05 of its weight: the null model
    sees a tenth of the batches, and over three seeds it came within 0.026 (Monte Carlo
    error 0.006 at 6000 samples)."""
    exact, data, labels = _labelled_mixture(8000, jr.key(0))
    net = sd.nn.TimeMLP(2, width=128, num_fourier=4, num_classes=K, key=jr.key(1))
    result = sd.fit(
        sd.NoisePrediction(net, VP),
        sd.DenoisingScoreMatching(VP),
        data,
        condition=labels,
        condition_dropout=0.1,
        null_condition=K,
        optimizer=optax.adam(optax.cosine_decay_schedule(3e-3, 3000, alpha=0.05)),
        num_steps=3000,
        batch_size=256,
        key=jr.key(2),
        progress=False,
    )
    want = jnp.concatenate([jnp.arange(3000) % K, jnp.full(6000, K)])
    x = sd.sample(
        VP, result.model, sd.ReverseSDE(num_steps=200), (9000, 2), key=jr.key(3), condition=want
    )
    for c in range(K):
        np.testing.assert_allclose(x[want == c].mean(0), exact.means[c], atol=0.15)
    resp = jax.vmap(lambda y: exact.responsibilities(0.0, y))(x[want == K])
    np.testing.assert_allclose(resp.mean(0), exact.weights, atol=0.05)


def _fit_kwargs(**overrides):
    _, data, labels = _labelled_mixture(512, jr.key(5))
    kwargs = dict(
        condition=labels,
        condition_dropout=0.2,
        null_condition=K,
        optimizer=optax.adam(1e-3),
        num_steps=40,
        batch_size=64,
        key=jr.key(6),
        progress=False,
    )
    kwargs.update(overrides)
    return data, kwargs


def _model():
    return sd.NoisePrediction(sd.nn.TimeMLP(2, width=32, num_classes=K, key=jr.key(7)), VP)


def test_conditional_fit_resumes_exactly(tmp_path):
    data, kwargs = _fit_kwargs()
    objective = sd.DenoisingScoreMatching(VP)
    straight = sd.fit(_model(), objective, data, **kwargs)
    ckpt = tmp_path / "run.ckpt"
    sd.fit(_model(), objective, data, checkpoint=ckpt, **{**kwargs, "num_steps": 20})
    resumed = sd.fit(_model(), objective, data, checkpoint=ckpt, resume=True, **kwargs)
    np.testing.assert_array_equal(straight.losses, resumed.losses)
    for a, b in zip(
        jax.tree.leaves(eqx.filter(straight.model, eqx.is_array)),
        jax.tree.leaves(eqx.filter(resumed.model, eqx.is_array)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_label_dropout_is_keyed_and_changes_training():
    data, kwargs = _fit_kwargs(num_steps=5)
    objective = sd.DenoisingScoreMatching(VP)
    a = sd.fit(_model(), objective, data, **kwargs)
    b = sd.fit(_model(), objective, data, **kwargs)
    c = sd.fit(_model(), objective, data, **{**kwargs, "condition_dropout": 0.0})
    np.testing.assert_array_equal(a.losses, b.losses)
    assert not np.array_equal(a.losses, c.losses)


@pytest.mark.parametrize(
    "objective",
    [
        sd.DenoisingScoreMatching(VP),
        sd.ImplicitScoreMatching(VP),
        sd.SlicedScoreMatching(VP),
        sd.MultiNoiseDSM(VP, 5),
    ],
    ids=lambda o: type(o).__name__,
)
def test_every_objective_trains_a_conditional_model(objective):
    data, kwargs = _fit_kwargs(num_steps=3)
    model = sd.DirectScore(sd.nn.TimeMLP(2, width=16, num_classes=K, key=jr.key(0)))
    result = sd.fit(model, objective, data, **kwargs)
    assert np.all(np.isfinite(result.losses))
    # The loss sees the labels: another labelling gives another loss.
    other = sd.fit(model, objective, data, **{**kwargs, "condition": (kwargs["condition"] + 1) % K})
    assert not np.array_equal(result.losses, other.losses)


# -- bad input --------------------------------------------------------------------------


def test_condition_errors_at_sample_and_log_prob():
    exact = _exact(VP)
    cond = exact.class_conditional()
    sampler = sd.ReverseSDE(num_steps=5)
    labels = jnp.arange(4) % K
    with pytest.raises(ValueError, match="leading axis of `num_samples`"):
        sd.sample(VP, cond, sampler, (4, 2), key=jr.key(0), condition=labels[:3])
    with pytest.raises(ValueError, match="conditional .*pass `condition=`"):
        sd.sample(VP, cond, sampler, (4, 2), key=jr.key(0))
    with pytest.raises(ValueError, match="takes no condition"):
        sd.sample(VP, exact, sampler, (4, 2), key=jr.key(0), condition=labels)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        sd.sample(VP, cond, sampler, (4, 2), key=jr.key(0), condition=labels.at[0].set(4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        sd.sample(VP, cond, sampler, (4, 2), key=jr.key(0), condition=labels.at[0].set(-1))
    with pytest.raises(TypeError, match="integer class labels"):
        sd.sample(VP, cond, sampler, (4, 2), key=jr.key(0), condition=labels.astype(float))
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="leading axis of the number of rows"):
        sd.log_prob(VP, cond, x, condition=labels[:2])
    with pytest.raises(ValueError, match="conditional"):
        sd.log_prob(VP, cond, x)
    with pytest.raises(ValueError, match="takes no condition"):
        sd.log_prob(VP, exact, x, condition=labels)


def test_network_condition_errors_name_the_fix():
    sampler = sd.ReverseSDE(num_steps=5)
    conditional = sd.NoisePrediction(sd.nn.TimeMLP(2, width=8, num_classes=K, key=jr.key(0)), VP)
    plain = sd.NoisePrediction(sd.nn.TimeMLP(2, width=8, key=jr.key(0)), VP)
    labels = jnp.arange(4) % K
    with pytest.raises(ValueError, match="conditional"):
        sd.sample(VP, conditional, sampler, (4, 2), key=jr.key(0))
    with pytest.raises(ValueError, match="takes no condition"):
        sd.sample(VP, plain, sampler, (4, 2), key=jr.key(0), condition=labels)
    with pytest.raises(ValueError, match="labels must lie"):
        sd.sample(VP, conditional, sampler, (4, 2), key=jr.key(0), condition=labels + 2)


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        ({"condition_dropout": 1.0}, ValueError, "condition_dropout"),
        ({"condition_dropout": -0.1}, ValueError, "condition_dropout"),
        ({"null_condition": None}, ValueError, "null_condition"),
        ({"condition": None}, ValueError, "need `condition=`"),
        ({"null_condition": 7}, ValueError, "labels must lie"),
        ({"null_condition": jnp.zeros(2, int)}, ValueError, "ONE row"),
        ({"condition": jnp.zeros(10, int)}, ValueError, "leading axis"),
        ({"condition": jnp.full(512, 9)}, ValueError, "labels must lie"),
    ],
)
def test_fit_condition_errors(overrides, error, match):
    data, kwargs = _fit_kwargs(**overrides)
    with pytest.raises(error, match=match):
        sd.fit(_model(), sd.DenoisingScoreMatching(VP), data, **kwargs)


def test_fit_refuses_labels_for_an_unconditional_model_and_needs_them_otherwise():
    data, kwargs = _fit_kwargs(condition_dropout=0.0, null_condition=None)
    plain = sd.NoisePrediction(sd.nn.TimeMLP(2, width=8, key=jr.key(0)), VP)
    with pytest.raises(ValueError, match="takes no condition"):
        sd.fit(plain, sd.DenoisingScoreMatching(VP), data, **kwargs)
    kwargs.pop("condition")
    with pytest.raises(ValueError, match="conditional"):
        sd.fit(_model(), sd.DenoisingScoreMatching(VP), data, **kwargs)


def test_guidance_arguments_are_checked():
    cond = _exact(VP).class_conditional()
    with pytest.raises(ValueError, match="labels must lie"):
        sd.ClassifierFreeGuidance(cond, scale=1.0, null_condition=K + 1)
    with pytest.raises(ValueError, match="scale"):
        sd.ClassifierFreeGuidance(cond, scale=float("nan"), null_condition=K)
    with pytest.raises(ValueError, match="null_condition"):
        sd.ClassifierFreeGuidance(cond, scale=1.0, null_condition=None)


def test_diffrax_terms_carry_the_condition_in_args():
    """A conditional score inside the SDE's Diffrax terms takes its condition from
    `diffeqsolve(..., args=c)`, and gives the solve of the score with `c` bound."""
    cond = _exact(VP).class_conditional()
    kwargs = dict(t0=1.0, t1=1e-3, dt0=-0.01, y0=jnp.array([0.4, -0.2]))
    via_args = dfx.diffeqsolve(VP.probability_flow_term(cond), dfx.Tsit5(), args=1, **kwargs)
    bound = dfx.diffeqsolve(
        VP.probability_flow_term(lambda t, x: cond(t, x, 1)), dfx.Tsit5(), **kwargs
    )
    np.testing.assert_array_equal(via_args.ys, bound.ys)


# -- review: labels that no check can see, null labels, argument types --------------------


def test_a_label_out_of_range_behind_a_closure_is_an_error_not_another_class():
    net = sd.nn.TimeMLP(2, width=16, num_classes=K, key=jr.key(0))
    model = sd.NoisePrediction(net, VP)
    labels = (jnp.arange(6) % K).at[0].set(11)
    with pytest.raises(Exception, match="class label"):
        sd.sample(
            VP,
            lambda t, x, c: model(t, x, c),
            sd.ReverseSDE(num_steps=5),
            (6, 2),
            key=jr.key(0),
            condition=labels,
        )


def test_the_null_condition_must_be_the_null_label():
    cond = _exact(VP).class_conditional()
    with pytest.raises(ValueError, match="must be the null label 3"):
        sd.ClassifierFreeGuidance(cond, scale=1.0, null_condition=2)
    data, kwargs = _fit_kwargs(null_condition=2)
    with pytest.raises(ValueError, match="must be the null label 3"):
        sd.fit(_model(), sd.DenoisingScoreMatching(VP), data, **kwargs)


def test_numpy_scalars_are_numbers():
    cond = _exact(VP).class_conditional()
    guided = sd.ClassifierFreeGuidance(cond, scale=np.float32(1.5), null_condition=np.int64(K))
    assert float(guided.scale) == 1.5
    data, kwargs = _fit_kwargs(num_steps=2, condition_dropout=np.float32(0.1))
    sd.fit(_model(), sd.DenoisingScoreMatching(VP), data, **kwargs)


def test_a_python_list_condition_is_named():
    cond = _exact(VP).class_conditional()
    with pytest.raises(ValueError, match="Python list"):
        sd.sample(VP, cond, sd.ReverseSDE(num_steps=5), (3, 2), key=jr.key(0), condition=[0, 1, 2])


def test_guidance_null_condition_must_look_like_a_condition():
    def score(t, x, c):
        return -x + c[:2]

    guided = sd.ClassifierFreeGuidance(score, scale=1.0, null_condition=jnp.zeros(4))
    with pytest.raises(ValueError, match="null_condition"):
        sd.sample(
            VP,
            guided,
            sd.ReverseSDE(num_steps=5),
            (3, 2),
            key=jr.key(0),
            condition=jnp.ones((3, 3)),
        )


def test_resume_with_other_conditioning_is_refused(tmp_path):
    data, kwargs = _fit_kwargs(num_steps=10)
    ckpt = tmp_path / "run.ckpt"
    sd.fit(_model(), sd.DenoisingScoreMatching(VP), data, checkpoint=ckpt, **kwargs)
    kwargs.update(num_steps=20, condition_dropout=0.5)
    with pytest.raises(ValueError, match="conditioning"):
        sd.fit(
            _model(), sd.DenoisingScoreMatching(VP), data, checkpoint=ckpt, resume=True, **kwargs
        )


def test_posterior_guidance_hides_the_labels_of_its_prior():
    """A class-conditional prior with its label bound, inside DPS: the sample's condition
    is the observation (floats), not a label; no label check applies to it."""
    cond = _exact(VP).class_conditional()
    prior = eqx.Partial(lambda t, x, c: cond(t, x, c), c=jnp.asarray(1))
    obs = sd.LinearObservation(jnp.array([[1.0, 0.0]]), noise_std=0.5)
    guided = sd.DPS(VP, lambda t, x: prior(t, x), obs)
    x = sd.sample(
        VP, guided, sd.ReverseSDE(num_steps=20), (4, 2), key=jr.key(0), condition=jnp.ones((4, 1))
    )
    assert bool(jnp.isfinite(x).all())
