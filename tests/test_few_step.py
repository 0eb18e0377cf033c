"""Few-step samplers: the exponential integrators (DDIM, DPM-Solver++, UniPC) as Diffrax
solvers, EDM's sampler, `initial=` and `encode`, all on exact scores."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import assert_moments_match, mixture_params

import scoresde as sd
from scoresde._sampler._sample import _sample_jit


N = 10_000
LOGSNR = sd.LogSNRGrid()


def _score(sde):
    w, mu, cov = mixture_params()
    return sd.GaussianMixtureScore(sde, weights=w, means=mu, covariances=cov)


# -- convergence order -------------------------------------------------------------------

ORDER_STEPS = (16, 32, 64)


@pytest.mark.parametrize(
    "sde", [sd.VPSDE(0.1, 20.0), sd.VESDE(0.01, 20.0)], ids=lambda s: type(s).__name__
)
@pytest.mark.parametrize(
    "solver, least",
    [(sd.DDIM(), 0.9), (sd.DPMSolverPP(order=2), 1.8), (sd.UniPC(order=3), 2.5)],
    ids=["DDIM", "DPMSolverPP2", "UniPC3"],
)
def test_observed_convergence_order(solver, least, sde):
    """Pathwise: from the same initial states, the error against a tight adaptive solve
    falls at the solver's order over 16..64 steps on the log-SNR grid (no Monte Carlo
    floor). Float32 keeps the reference error near 1e-6, below UniPC(3)'s 2e-4 at 64
    steps. (The least-squares slopes measured here: DDIM 0.98, 2M 1.9, UniPC(3) 3.5.)"""
    score, n = _score(sde), 64
    z = sde.prior_std * jr.normal(jr.PRNGKey(0), (n, 2))
    tight = dfx.PIDController(rtol=1e-7, atol=1e-7)
    ref = sd.sample(sde, score, sd.ProbabilityFlowODE(stepsize_controller=tight), (n, 2),
                    key=jr.PRNGKey(1), initial=z)  # fmt: skip
    errs = []
    for k in ORDER_STEPS:
        sampler = sd.ProbabilityFlowODE(solver, num_steps=k, grid=LOGSNR)
        x = sd.sample(sde, score, sampler, (n, 2), key=jr.PRNGKey(2), initial=z)
        errs.append(float(jnp.sqrt(jnp.mean(jnp.sum((x - ref) ** 2, -1)))))
    order = -np.polyfit(np.log(ORDER_STEPS), np.log(errs), 1)[0]
    assert order >= least, (order, errs)


# -- sampling the mixture ----------------------------------------------------------------

# Step counts where the measured pathwise error is well under the Monte Carlo error of
# 10^4 samples (covariance is the most sensitive moment): first-order methods need a few
# hundred steps, the multistep ones tens; EDM's 18 steps on VP(0.1, 20) (whose σ(T) ≈ 150
# is far above EDM's 80) leave a covariance bias of 6 standard errors, 40 do not.
FEW_STEP = {
    "ddim_ode": sd.ProbabilityFlowODE(sd.DDIM(), num_steps=300, grid=LOGSNR),
    "dpmpp2m_ode": sd.ProbabilityFlowODE(sd.DPMSolverPP(order=2), num_steps=50, grid=LOGSNR),
    "dpmpp3m_ode": sd.ProbabilityFlowODE(sd.DPMSolverPP(order=3), num_steps=30, grid=LOGSNR),
    "unipc3_ode": sd.ProbabilityFlowODE(sd.UniPC(order=3), num_steps=20, grid=LOGSNR),
    "ddim_ancestral": sd.ReverseSDE(sd.DDIM(), num_steps=300, grid=LOGSNR),
    "dpmpp2m_sde": sd.ReverseSDE(sd.DPMSolverPP(order=2), num_steps=100, grid=LOGSNR),
    "edm": sd.EDMSampler(num_steps=40),
    "edm_churn": sd.EDMSampler(num_steps=60, s_churn=10.0),
}


@pytest.mark.parametrize("name", list(FEW_STEP))
def test_few_step_sampler_reproduces_mixture(name, vp, mixture):
    w, mu, cov = mixture
    score = sd.GaussianMixtureScore(vp, weights=w, means=mu, covariances=cov)
    x = sd.sample(vp, score, FEW_STEP[name], (N, 2), key=jr.PRNGKey(0))
    assert_moments_match(x, w, mu, cov, score)


@pytest.mark.parametrize("sde", [sd.SubVPSDE(0.1, 20.0), sd.VESDE(0.01, 20.0)])
def test_dpm_solver_on_sub_vp_and_ve(sde, mixture):
    w, mu, cov = mixture
    score = sd.GaussianMixtureScore(sde, weights=w, means=mu, covariances=cov)
    sampler = sd.ProbabilityFlowODE(sd.DPMSolverPP(order=3), num_steps=30, grid=LOGSNR)
    assert_moments_match(
        sd.sample(sde, score, sampler, (N, 2), key=jr.PRNGKey(1)), w, mu, cov, score
    )


# -- initial= and encode -------------------------------------------------------------------


def test_encode_then_decode_returns_the_data(vp):
    score = _score(vp)
    x = sd.sample(vp, score, sd.ProbabilityFlowODE(sd.DPMSolverPP(), num_steps=30, grid=LOGSNR),
                  (200, 2), key=jr.PRNGKey(0))  # fmt: skip
    tight = dfx.PIDController(rtol=1e-6, atol=1e-6)
    z = sd.encode(vp, score, x, stepsize_controller=tight)
    decode = sd.ProbabilityFlowODE(stepsize_controller=tight)
    back = sd.sample(vp, score, decode, (200, 2), key=jr.PRNGKey(5), initial=z)
    np.testing.assert_allclose(back, x, atol=1e-3)
    latent = sd.log_prob(vp, score, x[:20], stepsize_controller=tight, return_info=True).latent
    np.testing.assert_allclose(latent, z[:20], atol=1e-3)
    # DDIM inversion: fixed steps of the exponential integrator, forwards.
    z_ddim = sd.encode(vp, score, x[:20], solver=sd.DPMSolverPP(2), num_steps=200, grid=LOGSNR)
    np.testing.assert_allclose(z_ddim, z[:20], atol=0.05 * float(jnp.abs(z).max()))


@pytest.mark.parametrize(
    "sampler",
    [
        sd.ProbabilityFlowODE(sd.UniPC(), num_steps=10, grid=LOGSNR),
        sd.ReverseSDE(sd.DPMSolverPP(), num_steps=10),
        sd.EDMSampler(num_steps=6, s_churn=5.0),
        sd.Langevin(num_steps=5, step_size=1e-3),
        sd.PredictorCorrector(num_steps=5),
    ],
    ids=lambda s: type(s).__name__,
)
def test_sample_i_depends_only_on_key_i_and_initial_i(sampler, vp):
    score = _score(vp)
    z = jr.normal(jr.PRNGKey(3), (50, 2))
    many = sd.sample(vp, score, sampler, (50, 2), key=jr.PRNGKey(4), initial=z)
    few = sd.sample(vp, score, sampler, (5, 2), key=jr.PRNGKey(4), initial=z[:5])
    np.testing.assert_allclose(many[:5], few, rtol=1e-5, atol=1e-5)
    moved = sd.sample(vp, score, sampler, (5, 2), key=jr.PRNGKey(4), initial=z[:5] + 1.0)
    assert not np.allclose(moved, few)


def test_initial_is_the_first_snapshot_and_works_with_conditions(vp):
    score = _score(vp)
    cond = lambda t, x, c: score(t, x) + c  # noqa: E731
    z, c = jr.normal(jr.PRNGKey(0), (6, 2)), jnp.zeros((6, 2))
    sampler = sd.ProbabilityFlowODE(sd.DPMSolverPP(), num_steps=12, grid=LOGSNR)
    out = sd.sample(vp, cond, sampler, (6, 2), key=jr.PRNGKey(1), initial=z, condition=c,
                    saveat=3, return_info=True)  # fmt: skip
    np.testing.assert_array_equal(out.trajectory[:, 0], z)
    plain = sd.sample(vp, score, sampler, (6, 2), key=jr.PRNGKey(1), initial=z)
    np.testing.assert_allclose(out.samples, plain, rtol=1e-6, atol=1e-6)


# -- statistics, compilation ---------------------------------------------------------------


def _count(sampler, sde):
    calls, score = [], _score(sde)

    def counted(t, x):
        jax.debug.callback(lambda: calls.append(1))
        return score(t, x)

    out = sd.sample(sde, counted, sampler, (1, 2), key=jr.PRNGKey(0), return_info=True)
    return len(calls), int(out.stats["num_score_evals"][0])


@pytest.mark.parametrize(
    "sampler",
    [
        sd.ProbabilityFlowODE(sd.DDIM(), num_steps=7),
        sd.ProbabilityFlowODE(sd.DPMSolverPP(order=3), num_steps=9, denoise=True),
        sd.ProbabilityFlowODE(sd.UniPC(order=3), num_steps=8, grid=LOGSNR),
        sd.ReverseSDE(sd.DPMSolverPP(order=2), num_steps=6),
        sd.EDMSampler(num_steps=5),
        sd.EDMSampler(num_steps=5, s_churn=3.0),
    ],
    ids=lambda s: f"{type(s).__name__}-{type(getattr(s, 'solver', s)).__name__}",
)
def test_score_evaluation_counts_are_exact(sampler, vp):
    counted, reported = _count(sampler, vp)
    assert counted == reported


def test_one_compilation_per_configuration(vp):
    sampler = sd.ProbabilityFlowODE(sd.UniPC(order=2), num_steps=11, grid=LOGSNR)
    before = eqx.debug.get_num_traces(_sample_jit)
    for i in range(3):
        z = jr.normal(jr.PRNGKey(i), (8, 2))
        sd.sample(vp, _score(vp), sampler, (8, 2), key=jr.PRNGKey(i), initial=z)
    assert eqx.debug.get_num_traces(_sample_jit) - before == 1


def test_lower_order_final_changes_only_short_solves(vp):
    score, z = _score(vp), jr.normal(jr.PRNGKey(0), (16, 2))

    def run(k, lower):
        solver = sd.DPMSolverPP(order=3, lower_order_final=lower)
        sampler = sd.ProbabilityFlowODE(solver, num_steps=k, grid=LOGSNR)
        return sd.sample(vp, score, sampler, (16, 2), key=jr.PRNGKey(0), initial=z)

    assert not np.allclose(run(8, True), run(8, False))
    np.testing.assert_array_equal(run(20, True), run(20, False))


# -- bad input -----------------------------------------------------------------------------


class _CubicSDE(sd.AbstractSDE):
    """A non-linear SDE dx = -x³ dt + dw."""

    T: jax.Array = eqx.field(default_factory=lambda: jnp.asarray(1.0))

    def drift(self, t, x):
        return -(x**3)

    def diffusion(self, t):
        return jnp.asarray(1.0)

    def prior_sample(self, key, data_shape):
        return jr.normal(key, data_shape)

    def prior_log_prob(self, x):
        return -0.5 * jnp.sum(x**2)

    @property
    def default_eps(self):
        return 1e-3


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sd.DPMSolverPP(order=0), "order"),
        (lambda: sd.DPMSolverPP(order=4), "order"),
        (lambda: sd.UniPC(order=5), "order"),
        (lambda: sd.UniPC(order=2.0), "order"),
        (lambda: sd.UniPC(variant="bh3"), "variant"),
        (
            lambda: sd.ProbabilityFlowODE(
                sd.DPMSolverPP(), stepsize_controller=dfx.PIDController(rtol=1e-3, atol=1e-3)
            ),
            "fixed steps",
        ),
        (lambda: sd.ReverseSDE(sd.UniPC(), num_steps=10), "probability-flow ODE only"),
        (lambda: sd.EDMSampler(num_steps=1), "num_steps"),
        (lambda: sd.EDMSampler(s_churn=-1.0), "s_churn"),
    ],
)
def test_bad_configuration_fails_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "sampler",
    [
        sd.ProbabilityFlowODE(sd.DPMSolverPP(), num_steps=10),
        sd.ReverseSDE(sd.DDIM(), num_steps=10),
        sd.EDMSampler(num_steps=5),
    ],
    ids=lambda s: type(s).__name__,
)
def test_non_linear_sde_is_refused_at_the_call(sampler):
    with pytest.raises(TypeError, match="linear SDE"):
        sd.sample(_CubicSDE(), lambda t, x: -x, sampler, (4, 2), key=jr.PRNGKey(0))


def test_solver_on_foreign_terms_is_refused(vp):
    with pytest.raises(TypeError, match="probability_flow_term"):
        dfx.diffeqsolve(dfx.ODETerm(lambda t, y, a: -y), sd.DDIM(), t0=1.0, t1=0.1, dt0=-0.1,
                        y0=jnp.ones(2))  # fmt: skip


@pytest.mark.parametrize(
    "initial, match",
    [
        (jnp.zeros((4, 3)), "shape"),
        (jnp.zeros((5, 2)), "shape"),
        (jnp.zeros((4, 2)).at[2, 1].set(jnp.nan), "NaN or inf"),
        (jnp.zeros((4, 2)).at[0, 0].set(jnp.inf), "NaN or inf"),
    ],
)
def test_bad_initial_fails_at_the_call(initial, match, vp):
    sampler = sd.ProbabilityFlowODE(sd.DDIM(), num_steps=5)
    with pytest.raises(ValueError, match=match):
        sd.sample(vp, _score(vp), sampler, (4, 2), key=jr.PRNGKey(0), initial=initial)


def test_encode_bad_input(vp):
    score = _score(vp)
    with pytest.raises(ValueError, match="num_steps"):
        sd.encode(vp, score, jnp.zeros((3, 2)), solver=sd.DDIM())
    with pytest.raises(ValueError, match="NaN or inf"):
        sd.encode(vp, score, jnp.full((3, 2), jnp.nan))
