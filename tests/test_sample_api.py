"""The `sample()` contract: reproducibility, one compilation, snapshots, statistics, errors."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import mixture_params

import scoresde as sd
from scoresde._sampler._sample import _sample_jit


def _score(sde):
    w, mu, cov = mixture_params()
    return sd.GaussianMixtureScore(sde, weights=w, means=mu, covariances=cov)


FIXED_STEP = [
    sd.ReverseSDE(dfx.Euler(), num_steps=50),
    sd.ReverseSDE(dfx.Heun(), num_steps=30, brownian="tree"),
    sd.ProbabilityFlowODE(dfx.Heun(), num_steps=30),
    sd.Langevin(num_steps=50, step_size=1e-3),
    sd.AnnealedLangevin(num_levels=5, steps_per_level=10, step_size=1e-5),
    sd.PredictorCorrector(num_steps=30),
]


@pytest.mark.parametrize("sampler", FIXED_STEP, ids=lambda s: type(s).__name__)
def test_sample_i_depends_only_on_key_and_i(sampler, vp):
    """The first 10 of 1000 samples are the 10 drawn with shape (10, 2), and the same key
    gives the same samples."""
    score, key = _score(vp), jr.PRNGKey(42)
    many = sd.sample(vp, score, sampler, (1000, 2), key=key)
    few = sd.sample(vp, score, sampler, (10, 2), key=key)
    np.testing.assert_allclose(many[:10], few, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(few, sd.sample(vp, score, sampler, (10, 2), key=key))
    other = sd.sample(vp, score, sampler, (10, 2), key=jr.PRNGKey(43))
    assert not np.allclose(few, other)


def test_adaptive_sampler_matches_across_batch_sizes_up_to_noise(vp):
    sampler = sd.ReverseSDE(dfx.Heun(), stepsize_controller=dfx.PIDController(rtol=1e-2, atol=1e-2))
    score, key = _score(vp), jr.PRNGKey(0)
    many = sd.sample(vp, score, sampler, (100, 2), key=key)
    few = sd.sample(vp, score, sampler, (5, 2), key=key)
    np.testing.assert_allclose(many[:5], few, rtol=1e-3, atol=1e-3)


def test_one_compilation_per_configuration(vp):
    """New keys and new score parameters (array leaves) reuse the compiled sampler."""
    sampler = sd.ReverseSDE(dfx.Euler(), num_steps=17)
    w, mu, cov = mixture_params()
    before = eqx.debug.get_num_traces(_sample_jit)
    for i in range(3):
        score = sd.GaussianMixtureScore(vp, weights=w, means=mu + i, covariances=cov)
        sd.sample(vp, score, sampler, (8, 2), key=jr.PRNGKey(i))
    # Schedule constants are arrays too: a new beta_max does not recompile.
    sd.sample(sd.VPSDE(0.1, 15.0), _score(sd.VPSDE(0.1, 15.0)), sampler, (8, 2), key=jr.PRNGKey(9))
    assert eqx.debug.get_num_traces(_sample_jit) - before == 1


@pytest.mark.parametrize("sampler", FIXED_STEP, ids=lambda s: type(s).__name__)
def test_trajectory_and_statistics(sampler, vp):
    out = sd.sample(vp, _score(vp), sampler, (6, 2), key=jr.PRNGKey(0), saveat=4, return_info=True)
    assert out.samples.shape == (6, 2)
    assert out.trajectory.shape == (6, 4, 2) and out.ts.shape == (4,)
    # The last snapshot is the end of the run: the returned samples.
    np.testing.assert_allclose(out.trajectory[:, -1], out.samples, rtol=1e-5, atol=1e-5)
    assert set(out.stats) == {"num_steps", "num_rejected_steps", "num_score_evals"}
    assert all(v.shape == (6,) for v in out.stats.values())
    assert bool(jnp.all(out.stats["num_score_evals"] >= out.stats["num_steps"]))


def test_first_snapshot_is_the_prior_draw(vp):
    sampler = sd.ReverseSDE(dfx.Euler(), num_steps=40)
    out = sd.sample(vp, _score(vp), sampler, (5, 2), key=jr.PRNGKey(3), saveat=3, return_info=True)
    np.testing.assert_allclose(
        out.ts, [1.0, vp.T / 2 + vp.default_eps / 2, vp.default_eps], rtol=2e-2
    )
    key_prior, _ = jr.split(jr.fold_in(jr.PRNGKey(3), 0))
    np.testing.assert_allclose(out.trajectory[0, 0], vp.prior_sample(key_prior, (2,)), rtol=1e-6)


def test_saveat_accepts_explicit_times(vp):
    times = jnp.array([0.9, 0.5, 0.1])
    sampler = sd.ReverseSDE(dfx.Heun(), stepsize_controller=dfx.PIDController(rtol=1e-2, atol=1e-2))
    out = sd.sample(
        vp, _score(vp), sampler, (3, 2), key=jr.PRNGKey(0), saveat=times, return_info=True
    )
    np.testing.assert_array_equal(out.ts, times)
    assert out.trajectory.shape == (3, 3, 2)


def _count_score_evals(sampler, sde):
    """Counts the score's evaluations for ONE sample with a host callback."""
    calls = []
    score = _score(sde)

    def counted(t, x):
        jax.debug.callback(lambda: calls.append(1))
        return score(t, x)

    out = sd.sample(sde, counted, sampler, (1, 2), key=jr.PRNGKey(0), return_info=True)
    return len(calls), int(out.stats["num_score_evals"][0])


@pytest.mark.parametrize(
    "sampler",
    [
        sd.ReverseSDE(dfx.Euler(), num_steps=12),
        sd.ReverseSDE(dfx.Heun(), num_steps=12, denoise=True),
        sd.ReverseSDE(dfx.Heun(), stepsize_controller=dfx.PIDController(rtol=1e-3, atol=1e-3)),
        sd.ProbabilityFlowODE(),
        sd.ProbabilityFlowODE(dfx.Heun(), num_steps=9),
        sd.PredictorCorrector(num_steps=7, corrector=sd.LangevinCorrector(num_steps=2)),
        sd.AnnealedLangevin(num_levels=3, steps_per_level=4, step_size=1e-5, denoise=True),
    ],
    ids=lambda s: type(s).__name__,
)
def test_reported_score_evaluations_are_exact(sampler, vp):
    counted, reported = _count_score_evals(sampler, vp)
    assert counted == reported


def test_grids_place_steps_as_documented(vp):
    eps, n = 1e-3, 8
    uni = sd.UniformGrid().times(vp, n, eps)
    edm = sd.EDMGrid(rho=7.0).times(vp, n, eps)
    lam = sd.LogSNRGrid().times(vp, n, eps)
    for ts in (uni, edm, lam):
        assert ts.shape == (n + 1,)
        np.testing.assert_allclose([ts[0], ts[-1]], [vp.T, eps], rtol=1e-6)
        assert bool(jnp.all(jnp.diff(ts) < 0))
    smax, smin = vp.sigma(vp.T) ** (1 / 7), vp.sigma(eps) ** (1 / 7)
    expected = (smax + jnp.arange(n + 1) / n * (smin - smax)) ** 7
    np.testing.assert_allclose(vp.sigma(edm), expected, rtol=1e-3)
    np.testing.assert_allclose(jnp.diff(vp.log_snr(lam)), jnp.diff(vp.log_snr(lam))[0], rtol=1e-3)


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sd.ReverseSDE(num_steps=0), "num_steps"),
        (lambda: sd.ReverseSDE(num_steps=10, eps=0.0), "eps"),
        (lambda: sd.ReverseSDE(num_steps=10, eps=1.5), "eps"),
        (lambda: sd.ProbabilityFlowODE(num_steps=-3), "num_steps"),
        (
            lambda: sd.ReverseSDE(
                num_steps=10, stepsize_controller=dfx.PIDController(rtol=1e-3, atol=1e-3)
            ),
            "exactly one",
        ),
        (
            lambda: sd.ReverseSDE(
                dfx.Heun(),
                stepsize_controller=dfx.PIDController(rtol=1e-3, atol=1e-3),
                brownian="grid",
            ),
            "brownian='tree'",
        ),
        (lambda: sd.ProbabilityFlowODE(dfx.SRA1(), num_steps=10), "ODE solver"),
    ],
)
def test_bad_sampler_configuration_fails_at_the_call(make, match, vp):
    with pytest.raises(ValueError, match=match):
        sd.sample(vp, _score(vp), make(), (4, 2), key=jr.PRNGKey(0))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sd.Langevin(num_steps=0, step_size=0.1), "num_steps"),
        (lambda: sd.Langevin(num_steps=10, step_size=-0.1), "step_size"),
        (
            lambda: sd.AnnealedLangevin(num_levels=0, steps_per_level=10, step_size=0.1),
            "num_levels",
        ),
        (lambda: sd.AnnealedLangevin(num_levels=3, steps_per_level=10, step_size=0.0), "step_size"),
        (lambda: sd.PredictorCorrector(num_steps=0), "num_steps"),
        (lambda: sd.PredictorCorrector(snr=-1.0), "snr"),
        (
            lambda: sd.Langevin(num_steps=10, step_size=0.1, init_uniform=(1.0, -1.0)),
            "init_uniform",
        ),
        (lambda: sd.EDMGrid(rho=0.0), "rho"),
    ],
)
def test_bad_hyperparameters_fail_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_shape_that_does_not_match_the_score(vp):
    with pytest.raises(ValueError, match="shape"):
        sd.sample(vp, _score(vp), sd.ReverseSDE(num_steps=5), (4, 3), key=jr.PRNGKey(0))
    with pytest.raises(ValueError, match="shape"):
        sd.sample(vp, lambda t, x: x[:1], sd.ReverseSDE(num_steps=5), (4, 3), key=jr.PRNGKey(0))
    with pytest.raises(ValueError, match="shape"):
        sd.sample(vp, _score(vp), sd.ReverseSDE(num_steps=5), (0, 2), key=jr.PRNGKey(0))


def test_wrong_argument_types(vp):
    with pytest.raises(Exception, match="shape"):
        sd.sample(vp, _score(vp), sd.ReverseSDE(num_steps=5), (4.5, 2), key=jr.PRNGKey(0))
    with pytest.raises(TypeError, match="sampler"):
        sd.sample(vp, _score(vp), "euler", (4, 2), key=jr.PRNGKey(0))
    with pytest.raises(Exception, match="key"):
        sd.sample(vp, _score(vp), sd.ReverseSDE(num_steps=5), (4, 2), key=3)


def test_nan_score_is_a_clear_error(vp):
    with pytest.raises(Exception, match="NaN"):
        sd.sample(
            vp, lambda t, x: x * jnp.nan, sd.ReverseSDE(num_steps=5), (4, 2), key=jr.PRNGKey(0)
        )


@pytest.mark.parametrize(
    "sampler",
    [
        sd.ReverseSDE(dfx.Euler(), num_steps=10),
        sd.ProbabilityFlowODE(dfx.Heun(), num_steps=10, grid=sd.EDMGrid()),
        sd.PredictorCorrector(num_steps=10),
        sd.Langevin(num_steps=10, step_size=1e-3),
        sd.AnnealedLangevin(num_levels=2, steps_per_level=5, step_size=1e-5),
    ],
    ids=lambda s: type(s).__name__,
)
def test_saveat_snaps_to_the_steps_taken_and_reports_them(sampler, vp):
    """Every fixed-step sampler snaps asked times to its clock (diffusion time, or step
    count for Langevin) and reports the snapped ones; the snapshot there is the state the
    run reached, so asking for the last clock value gives the sample itself."""
    clock = np.asarray(sampler.clock(vp))
    asked = np.array([clock[0], 0.37 * clock[3] + 0.63 * clock[4], clock[-1]])
    out = sd.sample(
        vp, _score(vp), sampler, (3, 2), key=jr.PRNGKey(0), saveat=asked, return_info=True
    )
    np.testing.assert_array_equal(out.ts, clock[[0, 4, -1]])
    np.testing.assert_allclose(out.trajectory[:, -1], out.samples, rtol=1e-5, atol=1e-5)
    # The same snapshot as asking for evenly spaced ones, which land on step 4 of 10 ...
    even = sd.sample(
        vp,
        _score(vp),
        sampler,
        (3, 2),
        key=jr.PRNGKey(0),
        saveat=np.array([clock[4]]),
        return_info=True,
    )
    np.testing.assert_allclose(even.trajectory[:, 0], out.trajectory[:, 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "sampler, saveat, match",
    [
        (sd.Langevin(num_steps=10, step_size=1e-3), [5.0, 5000.0], "outside the run"),
        (sd.ReverseSDE(num_steps=10), [1.5, 0.5], "outside the run"),
        (sd.ProbabilityFlowODE(), [0.5, 1e-6], "outside the run"),
        (sd.ReverseSDE(num_steps=10), [0.2, 0.5], "follow the run"),
    ],
)
def test_saveat_outside_the_run_is_refused(sampler, saveat, match, vp):
    with pytest.raises(ValueError, match=match):
        sd.sample(vp, _score(vp), sampler, (3, 2), key=jr.PRNGKey(0), saveat=jnp.array(saveat))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sd.ReverseSDE(num_steps=0), "num_steps"),
        (lambda: sd.ProbabilityFlowODE(num_steps=0), "num_steps"),
        (lambda: sd.ReverseSDE(max_steps=0), "max_steps"),
        (lambda: sd.ReverseSDE(brownian="path"), "brownian"),
        (lambda: sd.ReverseSDE(dfx.SRA1(), num_steps=10), "not supported"),
        (lambda: sd.ReverseSDE(dfx.Tsit5(), num_steps=10), "SDE solver"),
    ],
)
def test_diffrax_sampler_checks_fail_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_saveat_order_follows_the_run_for_every_sampler(vp):
    with pytest.raises(ValueError, match="follow the run"):
        sd.sample(
            vp,
            _score(vp),
            sd.PredictorCorrector(num_steps=10),
            (3, 2),
            key=jr.PRNGKey(0),
            saveat=jnp.array([0.2, 0.5]),
        )
    with pytest.raises(ValueError, match="follow the run"):
        sd.sample(
            vp,
            _score(vp),
            sd.Langevin(num_steps=10, step_size=1e-3),
            (3, 2),
            key=jr.PRNGKey(0),
            saveat=jnp.array([5.0, 2.0]),
        )
