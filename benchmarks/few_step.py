"""Few-step samplers on a 16-D, 8-component anisotropic Gaussian mixture with its exact score.

Five parts, each its own process (`--part`), results merged into one JSON:

- `path` (float64): from the same 200 prior draws, each sampler's error against a
  reference probability-flow solve (Tsit5, rtol = atol = 1e-8), over a range of score
  evaluations (median over samples of the per-sample RMS error), and the observed
  convergence order (least-squares slope of log error on log evaluations, 20..80). No
  Monte Carlo floor. Beside the
  library: an independent plain-NumPy DPM-Solver++(2M) and (3M), written from the
  equations of Lu et al. in k-diffusion's sigma form (`sample_dpmpp_2m`,
  `sample_dpmpp_3m_sde` with eta = 0), on the same grid and the same exact score.
- `dist` (float32): sliced Wasserstein-2 (128 fixed projections) of 10^4 samples against
  10^4 exact draws at 5, 10, 20 and 50 evaluations, and its floor (independent exact sets
  against the same draws, 10 repeats, mean and SD). A sampler is at the floor when its
  distance is at most the floor mean + 2 SD.
- `speed` (float32, batch 10^4): seconds per score evaluation of the new solvers against
  a hand-written `lax.scan` DPM-Solver++(2M) loop on the same score.
- `diffusers` (float64; the `bench` extra's diffusers 0.39.0 and flax): diffusers' Flax
  DDIM and DPM-Solver++(2M)/(3M) schedulers on the same exact score (as an epsilon
  prediction, with betas whose cumulative product is our m(t)^2 at t = (i+1)/1000),
  against ours on diffusers' own time points and on the log-SNR grid: pathwise error
  over 5..100 evaluations and SW2 at 10 and 20.
- `trained` (float32): the swiss roll (the quality benchmark's MLP, 3000 training steps)
  and the 8x8 digits (the U-Net of `python benchmarks/digits.py`'s run, or the checkpoint
  in $SCORESDE_DIGITS_CHECKPOINT): pathwise error against a
  PF-ODE solve at rtol 1e-6 of the same trained score, and SW2 against held-out data
  (swiss roll) or the digits' Fréchet distance (300 samples) at 5, 10, 20, 50 evaluations.

    python benchmarks/few_step.py            # all five parts, then the report
    python benchmarks/few_step.py --quick    # fewer samples, for a smoke run
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


# This checkout's library, whatever an editable install elsewhere points at.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OUT = Path(__file__).parent / "results" / "cpu"
D, K = 16, 8
PATH_EVALS = (5, 10, 20, 28, 40, 57, 80)
ORDER_FROM = 20
DIST_EVALS = (5, 10, 20, 50)


def mixture():
    """Unequal weights, means at scale 2, covariances Q diag(λ) Qᵀ with λ log-uniform in
    [0.01, 1] (condition numbers up to 100) and random rotations Q."""
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 2.0, K)
    w = w / w.sum()
    mu = 2.0 * rng.normal(size=(K, D))
    cov = []
    for _ in range(K):
        q, _ = np.linalg.qr(rng.normal(size=(D, D)))
        lam = np.exp(rng.uniform(np.log(0.01), 0.0, D))
        cov.append((q * lam) @ q.T)
    return w, mu, np.stack(cov)


def setup():
    import jax.numpy as jnp

    import scoresde as sd

    w, mu, cov = mixture()
    sde = sd.VPSDE(0.1, 20.0)
    score = sd.GaussianMixtureScore(
        sde, weights=jnp.asarray(w), means=jnp.asarray(mu), covariances=jnp.asarray(cov)
    )
    return sd, sde, score


def samplers(sd, evals: int) -> dict:
    """Each sampler at (about) `evals` score evaluations, or None where it cannot."""
    import diffrax as dfx

    L, E = sd.LogSNRGrid(), sd.EDMGrid()
    pf = lambda solver, n, grid=L: sd.ProbabilityFlowODE(solver, num_steps=n, grid=grid)  # noqa: E731
    out = {
        "DDIM": pf(sd.DDIM(), evals),
        "DPM-Solver++(2M)": pf(sd.DPMSolverPP(order=2), evals),
        "DPM-Solver++(3M)": pf(sd.DPMSolverPP(order=3), evals),
        "UniPC(2)": pf(sd.UniPC(order=2), evals),
        "UniPC(3)": pf(sd.UniPC(order=3), evals),
        "UniPC(3) bh1": pf(sd.UniPC(order=3, variant="bh1"), evals),
        "PF-ODE Heun (EDM grid)": pf(dfx.Heun(), evals // 2, E) if evals >= 2 else None,
        "EDMSampler": sd.EDMSampler(num_steps=(evals + 1) // 2) if evals >= 3 else None,
    }
    return out


def stochastic(sd, evals: int) -> dict:
    import diffrax as dfx

    L = sd.LogSNRGrid()
    return {
        "DPM-Solver++(2M) SDE": sd.ReverseSDE(sd.DPMSolverPP(order=2), num_steps=evals, grid=L),
        "DDIM ancestral": sd.ReverseSDE(sd.DDIM(), num_steps=evals, grid=L),
        "ReverseSDE Euler (log-SNR grid)": sd.ReverseSDE(dfx.Euler(), num_steps=evals, grid=L),
    }


# -- the independent NumPy reference ---------------------------------------------------


def numpy_dpmpp(denoise, x_T, sde, ts, order):
    """DPM-Solver++(2M) / (3M) in k-diffusion's form: x̄ = x/m, σ = s/m, λ = -log σ,
    x̄_b = (σ_b/σ_a) x̄_a + (1 - e^{-h}) D + corrections (midpoint 2M; 3M with
    phi_2 d1 - phi_3 d2 as k-diffusion writes it). `denoise(t, x)` is Tweedie's x̂₀."""
    t = np.asarray(ts, np.float64)
    m = np.asarray(sde.mean_coeff(t), np.float64)
    sig = np.asarray(sde.sigma(t), np.float64)
    lam = -np.log(sig)
    xbar = np.asarray(x_T, np.float64) / m[0]
    hist, hs = [], []
    for i in range(len(t) - 1):
        d = np.asarray(denoise(t[i], m[i] * xbar), np.float64)
        h = lam[i + 1] - lam[i]
        x_new = (sig[i + 1] / sig[i]) * xbar - np.expm1(-h) * d
        if order == 2 and hist:
            r = hs[-1] / h
            x_new = x_new - 0.5 * np.expm1(-h) * (d - hist[-1]) / r
        if order == 3 and len(hist) == 1:
            r = hs[-1] / h
            phi2 = np.expm1(-h) / h + 1
            x_new = x_new + phi2 * (d - hist[-1]) / r
        if order == 3 and len(hist) >= 2:
            r0, r1 = hs[-1] / h, hs[-2] / h
            d1_0 = (d - hist[-1]) / r0
            d1_1 = (hist[-1] - hist[-2]) / r1
            d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi2 = np.expm1(-h) / h + 1
            phi3 = phi2 / h - 0.5
            x_new = x_new + phi2 * d1 - phi3 * d2
        hist.append(d)
        hs.append(h)
        xbar = x_new
    return m[-1] * xbar


def part_path(quick: bool) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import diffrax as dfx
    import jax.random as jr

    sd, sde, score = setup()
    n = 100 if quick else 200
    z = jr.normal(jr.PRNGKey(0), (n, D))
    tight = dfx.PIDController(rtol=1e-8, atol=1e-8)
    t0 = time.perf_counter()
    reference = sd.ProbabilityFlowODE(stepsize_controller=tight, max_steps=100_000)
    ref = sd.sample(sde, score, reference, (n, D), key=jr.PRNGKey(1), initial=z, return_info=True)
    ref_evals = float(ref.stats["num_score_evals"].mean())
    ref = np.asarray(ref.samples)
    ref_s = time.perf_counter() - t0

    def errors(x):
        """(median, mean) over samples of the per-sample RMS error. The median is the
        fitted one: at few steps a few paths cross to another component (an O(1) error
        that says nothing about the order)."""
        per = np.sqrt(np.mean((np.asarray(x) - ref) ** 2, axis=1))
        return float(np.median(per)), float(np.mean(per))

    def tweedie(t, x):
        return (x + sde.std(t) ** 2 * score(t, x)) / sde.mean_coeff(t)

    denoise = jax.jit(jax.vmap(tweedie, in_axes=(None, 0)))
    evals_list = PATH_EVALS[:5] if quick else PATH_EVALS
    curves: dict[str, list] = {}
    for evals in evals_list:
        for name, sampler in samplers(sd, evals).items():
            if sampler is None:
                continue
            out = sd.sample(
                sde, score, sampler, (n, D), key=jr.PRNGKey(2), initial=z, return_info=True
            )
            med, mean = errors(out.samples)
            e = int(out.stats["num_score_evals"][0])
            curves.setdefault(name, []).append({"evals": e, "error": med, "mean_error": mean})
        ts = np.asarray(sd.LogSNRGrid().times(sde, evals, sde.default_eps))
        for order, name in ((2, "NumPy 2M"), (3, "NumPy 3M (k-diffusion form)")):
            med, mean = errors(numpy_dpmpp(denoise, np.asarray(z), sde, ts, order))
            curves.setdefault(name, []).append({"evals": evals, "error": med, "mean_error": mean})
        print(f"path: {evals} evaluations done", flush=True)
    orders = {}
    for name, pts in curves.items():
        use = [p for p in pts if p["evals"] >= ORDER_FROM]
        if len(use) >= 3:
            ev, err = [p["evals"] for p in use], [p["error"] for p in use]
            orders[name] = round(-float(np.polyfit(np.log(ev), np.log(err), 1)[0]), 2)
    return {
        "n": n,
        "reference": {
            "solver": "Tsit5, PIDController(rtol=1e-8, atol=1e-8), float64",
            "mean_score_evals": ref_evals,
            "seconds": ref_s,
        },
        "curves": curves,
        "observed_order": orders,
        "order_fit": "least squares of log error (median over samples of the per-sample RMS "
        f"error) on log evaluations, evaluations >= {ORDER_FROM}",
    }


def exact_mixture(key, n: int, dtype=None):
    """`n` exact draws of the mixture (default dtype: JAX's default float)."""
    import jax.numpy as jnp
    import jax.random as jr

    dtype = jnp.asarray(1.0).dtype if dtype is None else dtype
    w, mu, cov = mixture()
    kc, kz = jr.split(key)
    comp = jr.choice(kc, K, (n,), p=jnp.asarray(w, jnp.float32))
    chol = jnp.linalg.cholesky(jnp.asarray(cov, dtype))
    e = jr.normal(kz, (n, D), dtype)
    return jnp.asarray(mu, dtype)[comp] + jnp.einsum("nij,nj->ni", chol[comp], e)


def part_dist(quick: bool) -> dict:
    import jax.numpy as jnp
    import jax.random as jr

    sd, sde, score = setup()
    n = 2000 if quick else 10_000
    exact = lambda key: exact_mixture(key, n, jnp.float32)  # noqa: E731

    target = exact(jr.PRNGKey(100))
    pkey = jr.PRNGKey(7)
    sw = lambda x: float(sd.metrics.sliced_wasserstein(x, target, key=pkey))  # noqa: E731
    floor = [sw(exact(jr.PRNGKey(200 + r))) for r in range(10)]
    floor_mean, floor_sd = float(np.mean(floor)), float(np.std(floor, ddof=1))
    rows: dict[str, list] = {}
    for evals in DIST_EVALS:
        for name, sampler in {**samplers(sd, evals), **stochastic(sd, evals)}.items():
            if sampler is None:
                continue
            out = sd.sample(sde, score, sampler, (n, D), key=jr.PRNGKey(3), return_info=True)
            e = int(out.stats["num_score_evals"][0])
            rows.setdefault(name, []).append({"evals": e, "sw2": sw(out.samples)})
        print(f"dist: {evals} evaluations done", flush=True)
    limit = floor_mean + 2 * floor_sd
    reach = {}
    for name, pts in rows.items():
        ok = [p["evals"] for p in pts if p["sw2"] <= limit]
        reach[name] = min(ok) if ok else None
    return {
        "n": n,
        "floor": {"mean": floor_mean, "sd": floor_sd, "repeats": len(floor)},
        "rule": "at the floor: SW2 <= floor mean + 2 SD; reported: the fewest evaluations "
        "tested at the floor",
        "curves": rows,
        "first_at_floor": reach,
    }


def part_speed(quick: bool, network: bool = False) -> dict:
    """`network=False`: the exact mixture score, cheap, so the solvers' own arithmetic and
    `sample()`'s fixed cost show; `network=True`: the 3x256 MLP the other fixed-step
    samplers are timed with (untrained: the cost is the same)."""
    import jax
    import jax.lax as lax
    import jax.numpy as jnp
    import jax.random as jr

    sys.path.insert(0, str(Path(__file__).parent))
    from _common import timing

    sd, sde, score = setup()
    if network:
        score = sd.NoisePrediction(sd.nn.TimeMLP(D, key=jr.key(0)), sde)
    n, steps = (2000 if quick else 10_000), 20
    z = jr.normal(jr.PRNGKey(0), (n, D))
    ts = sd.LogSNRGrid().times(sde, steps, sde.default_eps)
    batched = jax.vmap(score, in_axes=(None, 0))

    @jax.jit
    def scan_2m(x):
        """DPM-Solver++(2M) by hand: one batched score call per step in a lax.scan."""
        m, s = sde.mean_coeff(ts), sde.std(ts)
        lam = jnp.log(m / s)

        def body(carry, i):
            x, d_old, h_old = carry
            d = (x + s[i] ** 2 * batched(ts[i], x)) / m[i]
            h = lam[i + 1] - lam[i]
            r = jnp.where(i > 0, h_old / h, 1.0)
            corr = jnp.where(i > 0, 0.5 / r, 0.0)
            x = s[i + 1] / s[i] * x - m[i + 1] * jnp.expm1(-h) * ((1 + corr) * d - corr * d_old)
            return (x, d, h), None

        (x, _, _), _ = lax.scan(body, (x, jnp.zeros_like(x), jnp.ones(())), jnp.arange(steps))
        return x

    res = {"batch": n, "steps": steps, "repeats": 15, "timing": "interleaved with the scan loop"}
    res["score"] = "TimeMLP(16), 3 x 256 ReLU" if network else "the exact 16-D mixture score"
    ref = timing(scan_2m, z, repeats=3)
    res["lax.scan DPM-Solver++(2M)"] = {"median_s": ref["median_s"], "compile_s": ref["compile_s"]}
    lib = {
        "DDIM": sd.DDIM(),
        "DPM-Solver++(2M)": sd.DPMSolverPP(order=2),
        "DPM-Solver++(3M)": sd.DPMSolverPP(order=3),
        "UniPC(3)": sd.UniPC(order=3),
    }
    for name, solver in lib.items():
        sampler = sd.ProbabilityFlowODE(solver, num_steps=steps, grid=sd.LogSNRGrid())
        fn = lambda z: sd.sample(sde, score, sampler, (n, D), key=jr.PRNGKey(0), initial=z)  # noqa: E731, B023
        first = timing(fn, z, repeats=1)
        # The machine is shared: alternate library and scan runs so that both see the
        # same load, and take the median of the per-pair ratios.
        lib_s, scan_s = [], []
        for _ in range(15):
            lib_s.append(timing(fn, z, repeats=1)["median_s"])
            scan_s.append(timing(scan_2m, z, repeats=1)["median_s"])
        res[name] = {
            "median_s": float(np.median(lib_s)),
            "scan_median_s": float(np.median(scan_s)),
            "compile_s": first["compile_s"],
            "ratio_to_scan": float(np.median(np.array(lib_s) / np.array(scan_s))),
            # The fastest run of each: what is left when other work on the machine is not.
            "min_s": float(np.min(lib_s)),
            "scan_min_s": float(np.min(scan_s)),
            "min_ratio": float(np.min(lib_s) / np.min(scan_s)),
        }
    x_scan = scan_2m(z)
    x_lib = sd.sample(sde, score, sd.ProbabilityFlowODE(sd.DPMSolverPP(2), num_steps=steps,
                      grid=sd.LogSNRGrid()), (n, D), key=jr.PRNGKey(0), initial=z)  # fmt: skip
    res["max_abs_difference_2m_vs_scan"] = float(jnp.abs(x_scan - x_lib).max())
    return res


# -- side by side with diffusers' Flax schedulers ----------------------------------------

HF_EVALS = (5, 10, 20, 25, 40, 50, 100)  # divisors of 1000: DDIM's "leading" spacing starts at T
HF_DIST_EVALS = (10, 20)
N_TRAIN = 1000


def hf_betas(sde) -> np.ndarray:
    """Discrete betas whose cumulative product is the VP SDE's m(t)² at t = (i+1)/1000, so
    that diffusers' timestep i is our time (i+1)/1000 with the same (α, σ) to rounding."""
    t = np.arange(1, N_TRAIN + 1) / N_TRAIN
    m2 = np.asarray(sde.mean_coeff(t), np.float64) ** 2
    return 1.0 - m2 / np.concatenate([[1.0], m2[:-1]])


CHUNK = 25


def in_chunks(fn, z, size: int = CHUNK) -> np.ndarray:
    """`fn` on `size` rows of `z` at a time: the mixture score's batched Cholesky and
    triangular solves can deadlock XLA's CPU thread pool on 2 loaded cores when one call
    holds thousands of them (`len(z)` must be a multiple of `size`)."""
    return np.concatenate([np.asarray(fn(z[i : i + size])) for i in range(0, len(z), size)])


def hf_run(sde, score, name: str, steps: int, z):
    """diffusers' scheduler loop (epsilon prediction eps = -s(t) score) from the states `z`
    at T; returns the samples and the continuous times it stepped through."""
    import jax
    import jax.numpy as jnp
    from diffusers import FlaxDDIMScheduler, FlaxDPMSolverMultistepScheduler

    common = {"num_train_timesteps": N_TRAIN, "trained_betas": hf_betas(sde), "dtype": z.dtype}
    if name == "DDIM":
        # steps_offset = ratio - 1 makes the first timestep 999 (t = T); the last step goes
        # to alphas_cumprod[0] (t = 1e-3) with set_alpha_to_one=False, as ours stops at eps.
        sch = FlaxDDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False,
                                steps_offset=N_TRAIN // steps - 1)  # fmt: skip
    else:
        order = {"DPM-Solver++(2M)": 2, "DPM-Solver++(3M)": 3}[name]
        sch = FlaxDPMSolverMultistepScheduler(
            **common, solver_order=order, algorithm_type="dpmsolver++", lower_order_final=True
        )
    state = sch.set_timesteps(sch.create_state(), steps, (CHUNK, *z.shape[1:]))
    # Under jax_enable_x64 the DPM scheduler's lax.select meets int32 timesteps and an int64
    # literal; int64 timesteps are the same values.
    int_ = jnp.asarray(0).dtype
    state = state.replace(timesteps=state.timesteps.astype(int_))
    if hasattr(state, "prev_timestep"):
        state = state.replace(prev_timestep=state.prev_timestep.astype(int_))
    batched = jax.vmap(score, in_axes=(None, 0))

    @jax.jit
    def loop(z, state):
        def body(i, carry):
            x, state = carry
            k = state.timesteps[i]
            t = (k + 1).astype(z.dtype) / N_TRAIN
            eps = -sde.std(t) * batched(t, x)
            return sch.step(state, eps, k, x, return_dict=False)

        return jax.lax.fori_loop(0, steps, body, (z, state))[0]

    times = np.concatenate([(np.asarray(state.timesteps) + 1) / N_TRAIN, [1 / N_TRAIN]])
    return in_chunks(lambda c: loop(c, state), z), times


def explicit_grid(sd, times):
    """Our samplers on diffusers' time points: a grid of given times (benchmark only)."""
    import equinox as eqx
    import jax.numpy as jnp

    class ExplicitGrid(sd.AbstractTimeGrid):
        ts: tuple = eqx.field(static=True)

        def times(self, sde, num_steps, eps):
            assert num_steps + 1 == len(self.ts) and self.ts[-1] == eps  # T: traced
            return jnp.asarray(self.ts)

    return ExplicitGrid(tuple(float(t) for t in times))


def ours(sd, name: str, steps: int, grid):
    solver = {"DDIM": sd.DDIM(), "DPM-Solver++(2M)": sd.DPMSolverPP(order=2),
              "DPM-Solver++(3M)": sd.DPMSolverPP(order=3)}[name]  # fmt: skip
    return sd.ProbabilityFlowODE(solver, num_steps=steps, grid=grid)


HF_NAMES = ("DDIM", "DPM-Solver++(2M)", "DPM-Solver++(3M)")


def part_diffusers(quick: bool) -> dict:
    """float64 throughout (diffusers' schedulers take `dtype`), so that the comparison is of
    the algorithms, not of float32 rounding in a cumulative product of 1000 betas."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import diffrax as dfx
    import diffusers
    import flax
    import jax.random as jr

    sd, sde, score = setup()
    n = 100 if quick else 200
    z = jr.normal(jr.PRNGKey(0), (n, D))
    tight = dfx.PIDController(rtol=1e-8, atol=1e-8)
    reference = sd.ProbabilityFlowODE(stepsize_controller=tight, max_steps=100_000)
    run = lambda sampler, z: in_chunks(  # noqa: E731
        lambda c: sd.sample(sde, score, sampler, c.shape, key=jr.PRNGKey(2), initial=c), z
    )
    ref = run(reference, z)

    def err(x):
        return float(np.median(np.sqrt(np.mean((np.asarray(x) - ref) ** 2, axis=1))))

    curves: dict[str, list] = {}
    agreement: dict[str, float] = {}
    for steps in HF_EVALS[:4] if quick else HF_EVALS:
        for name in HF_NAMES:
            x_hf, times = hf_run(sde, score, name, steps, z)
            x_same = run(ours(sd, name, steps, explicit_grid(sd, times)), z)
            x_log = run(ours(sd, name, steps, sd.LogSNRGrid()), z)
            for label, x in (("diffusers", x_hf), ("ours, diffusers' times", x_same),
                             ("ours, log-SNR grid", x_log)):  # fmt: skip
                curves.setdefault(f"{name}: {label}", []).append({"evals": steps, "error": err(x)})
            diff = float(np.max(np.abs(np.asarray(x_hf) - np.asarray(x_same))))
            agreement[f"{name} ({steps})"] = diff
        print(f"diffusers path: {steps} evaluations done", flush=True)
    orders = {}
    for label, pts in curves.items():
        use = [p for p in pts if p["evals"] >= ORDER_FROM]
        if len(use) >= 3:
            ev, e = [p["evals"] for p in use], [p["error"] for p in use]
            orders[label] = round(-float(np.polyfit(np.log(ev), np.log(e), 1)[0]), 2)

    # Distributional: the same 10^4 prior draws through each, SW2 against exact draws.
    n_d = 2000 if quick else 10_000
    target = exact_mixture(jr.PRNGKey(100), n_d)
    pkey = jr.PRNGKey(7)
    sw = lambda x: float(sd.metrics.sliced_wasserstein(x, target, key=pkey))  # noqa: E731
    floor = [sw(exact_mixture(jr.PRNGKey(200 + r), n_d)) for r in range(10)]
    zd = jr.normal(jr.PRNGKey(3), (n_d, D))
    dist: dict[str, list] = {}
    for steps in HF_DIST_EVALS:
        for name in HF_NAMES:
            x_hf, times = hf_run(sde, score, name, steps, zd)
            x_same = run(ours(sd, name, steps, explicit_grid(sd, times)), zd)
            x_log = run(ours(sd, name, steps, sd.LogSNRGrid()), zd)
            for label, x in (("diffusers", x_hf), ("ours, diffusers' times", x_same),
                             ("ours, log-SNR grid", x_log)):  # fmt: skip
                dist.setdefault(f"{name}: {label}", []).append({"evals": steps, "sw2": sw(x)})
        print(f"diffusers dist: {steps} evaluations done", flush=True)
    return {
        "versions": {
            "diffusers": diffusers.__version__,
            "flax": flax.__version__,
            "jax": jax.__version__,
        },
        "setup": "diffusers FlaxDDIMScheduler (clip_sample=False, set_alpha_to_one=False, "
        "steps_offset=1000//steps-1, eta=0) and FlaxDPMSolverMultistepScheduler "
        "(dpmsolver++, midpoint, lower_order_final=True, timestep_spacing='linspace'), "
        "trained_betas with cumprod = m(t)^2 at t=(i+1)/1000 of VPSDE(0.1, 20), "
        "epsilon prediction -s(t) * exact score, float64",
        "n": n,
        "curves": curves,
        "observed_order": orders,
        "max_abs_difference_same_times": agreement,
        "dist": {
            "n": n_d,
            "floor": {
                "mean": float(np.mean(floor)),
                "sd": float(np.std(floor, ddof=1)),
                "repeats": len(floor),
            },
            "curves": dist,
        },
    }


# -- trained models: the swiss roll and the 8x8 digits -----------------------------------

TRAINED_EVALS = (5, 10, 20, 50)
# A run of `python benchmarks/digits.py` (the CLI's digits recipe, 2400 steps) leaves it here.
DIGITS_CHECKPOINT = os.environ.get(
    "SCORESDE_DIGITS_CHECKPOINT", "/tmp/scoresde_digits/checkpoint.ckpt"
)


def trained_samplers(sd, evals: int) -> dict:
    import diffrax as dfx

    L = sd.LogSNRGrid()
    pf = lambda solver: sd.ProbabilityFlowODE(solver, num_steps=evals, grid=L)  # noqa: E731
    return {
        "DDIM": pf(sd.DDIM()),
        "DPM-Solver++(2M)": pf(sd.DPMSolverPP(order=2)),
        "DPM-Solver++(3M)": pf(sd.DPMSolverPP(order=3)),
        "UniPC(3)": pf(sd.UniPC(order=3)),
        "PF-ODE Heun (EDM grid)": sd.ProbabilityFlowODE(
            dfx.Heun(), num_steps=evals // 2, grid=sd.EDMGrid()
        ),
    }


def _trained_rows(sd, sde, model, shape, z, quality, log):
    """Pathwise error (median per-sample RMS) against a PF-ODE solve at rtol 1e-6 of the
    same trained score from the same `z`, and `quality(samples)` at each count."""
    import diffrax as dfx
    import jax.random as jr

    n = z.shape[0]
    tight = dfx.PIDController(rtol=1e-6, atol=1e-6)
    ref = sd.sample(sde, model, sd.ProbabilityFlowODE(stepsize_controller=tight, max_steps=100_000),
                    (n, *shape), key=jr.PRNGKey(1), initial=z, return_info=True)  # fmt: skip
    ref_evals = float(ref.stats["num_score_evals"].mean())
    ref_x = np.asarray(ref.samples).reshape(n, -1)
    rows: dict[str, list] = {"reference (Tsit5, rtol 1e-6)": [
        {"evals": ref_evals, "error": 0.0, "quality": quality(ref.samples)}]}  # fmt: skip
    for evals in TRAINED_EVALS:
        for name, sampler in trained_samplers(sd, evals).items():
            out = sd.sample(sde, model, sampler, (n, *shape), key=jr.PRNGKey(2), initial=z,
                            return_info=True)  # fmt: skip
            x = np.asarray(out.samples).reshape(n, -1)
            err = float(np.median(np.sqrt(np.mean((x - ref_x) ** 2, axis=1))))
            e = int(out.stats["num_score_evals"][0])
            rows.setdefault(name, []).append(
                {"evals": e, "error": err, "quality": quality(out.samples)}
            )
        log(f"trained: {evals} evaluations done")
    return rows


def part_trained(quick: bool) -> dict:
    import jax.random as jr

    sys.path.insert(0, str(Path(__file__).parent))
    import _quality_bench as qb

    import scoresde as sd

    log = lambda s: print(s, flush=True)  # noqa: E731
    if not Path(DIGITS_CHECKPOINT).exists():
        raise SystemExit(
            f"no digits checkpoint at {DIGITS_CHECKPOINT}: run `python benchmarks/digits.py` "
            "first, or set SCORESDE_DIGITS_CHECKPOINT to a `scoresde train` checkpoint."
        )
    # Swiss roll: the quality benchmark's model and training (3000 steps unless quick).
    steps = 300 if quick else 3000
    sde, model, secs = qb.train_swiss_roll(steps, jr.key(0))
    n_sr = 1000 if quick else 5000
    held_out = sd.datasets.swiss_roll(n_sr, key=jr.key(101), noise=0.5)
    pkey = jr.PRNGKey(7)
    sw = lambda x: float(sd.metrics.sliced_wasserstein(x, held_out, key=pkey))  # noqa: E731
    floor = [sw(sd.datasets.swiss_roll(n_sr, key=jr.key(300 + r), noise=0.5)) for r in range(5)]
    z = jr.normal(jr.PRNGKey(0), (n_sr, 2))
    swiss = _trained_rows(sd, sde, model, (2,), z, sw, log)

    # Digits: the CLI-trained U-Net (2400 steps), Fréchet distance of n samples.
    model = sd.load_model(DIGITS_CHECKPOINT)
    n_dg = 100 if quick else 300
    test = np.asarray(sd.datasets.load_digits(split="test")[0])[:n_dg]
    fd = lambda x: float(sd.metrics.digits_frechet_distance(np.asarray(x)))  # noqa: E731
    z = jr.normal(jr.PRNGKey(0), (n_dg, 1, 8, 8))
    digits = _trained_rows(sd, model.sde, model, (1, 8, 8), z, fd, log)
    return {
        "swiss_roll": {
            "model": "NoisePrediction(TimeMLP(2, num_fourier=4)) on VPSDE(), "
            f"{steps} steps of benchmarks/_quality_bench.train_swiss_roll ({secs:.0f} s)",
            "n": n_sr,
            "quality": "sliced W2 against held-out swiss-roll draws",
            "floor": {
                "mean": float(np.mean(floor)),
                "sd": float(np.std(floor, ddof=1)),
                "repeats": len(floor),
            },
            "rows": swiss,
        },
        "digits": {
            "model": f"{DIGITS_CHECKPOINT} (scoresde train --dataset digits --steps 2400)",
            "n": n_dg,
            "quality": "sd.metrics.digits_frechet_distance against the training split",
            "floor": {
                "mean": fd(test),
                "sd": None,
                "repeats": 1,
                "what": f"the first {n_dg} held-out test digits",
            },
            "rows": digits,
        },
    }


def report(results: dict) -> str:
    lines = ["# Few-step samplers on a 16-D, 8-component anisotropic mixture (CPU)", ""]
    lines += [f"Command: `{results['command']}`", ""]
    p = results.get("path")
    if p:
        lines += ["## Pathwise error against a float64 reference solve (same initial states)", ""]
        lines += [f"n = {p['n']}; reference: {p['reference']['solver']} "
                  f"({p['reference']['mean_score_evals']:.0f} evaluations)",
                  f"error: {p['order_fit']}.", ""]  # fmt: skip
        evals = sorted({e["evals"] for c in p["curves"].values() for e in c})
        lines.append("| sampler | observed order | " + " | ".join(f"{e}" for e in evals) + " |")
        lines.append("|---|---|" + "---|" * len(evals))
        for name, pts in p["curves"].items():
            by = {q["evals"]: q["error"] for q in pts}
            cells = [f"{by[e]:.2e}" if e in by else "" for e in evals]
            lines.append(
                f"| {name} | {p['observed_order'].get(name, '')} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    d = results.get("dist")
    if d:
        fl = d["floor"]
        lines += ["## Sliced Wasserstein-2 against exact samples", ""]
        lines += [
            f"n = {d['n']}; floor {fl['mean']:.4f} ± {fl['sd']:.4f} ({fl['repeats']} repeats);",
            f"{d['rule']}.",
            "",
        ]
        lines.append("| sampler | first at floor | SW2 at (evaluations) |")
        lines.append("|---|---|---|")
        for name, pts in d["curves"].items():
            cells = ", ".join(f"{q['sw2']:.4f} ({q['evals']})" for q in pts)
            lines.append(f"| {name} | {d['first_at_floor'][name]} | {cells} |")
        lines.append("")
    h = results.get("diffusers")
    if h:
        lines += _report_diffusers(h)
    tr = results.get("trained")
    if tr:
        lines += _report_trained(tr)
    for s in (results.get("speed"), results.get("speed_mlp")):
        if not s:
            continue
        score = s.get("score", "the exact 16-D mixture score")
        lines += [f"## Speed (batch {s['batch']}, {s['steps']} steps, float32, {score})", ""]
        lines.append(
            "Library runs alternate with runs of the `lax.scan` loop (one score call per step, "
            "the same 2M update), 15 pairs; ratios: median of the per-pair ratios, and of "
            "the fastest runs (the machine is shared; the fastest run is the least disturbed)."
        )
        lines.append("")
        lines.append(
            "| sampler | median s | scan loop median s | median ratio | fastest s | "
            "scan loop fastest s | ratio of fastest |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for name, r in s.items():
            if isinstance(r, dict) and "ratio_to_scan" in r:
                lines.append(
                    f"| {name} | {r['median_s']:.4f} | {r['scan_median_s']:.4f} | "
                    f"{r['ratio_to_scan']:.2f} | {r['min_s']:.4f} | {r['scan_min_s']:.4f} | "
                    f"{r['min_ratio']:.2f} |"
                )
        lines.append(
            "\nlibrary 2M vs the scan loop: max |difference| "
            f"{s['max_abs_difference_2m_vs_scan']:.1e}"
        )
    return "\n".join(lines) + "\n"


def _report_diffusers(h: dict) -> list[str]:
    v = h["versions"]
    lines = ["## Side by side with diffusers' Flax schedulers (same exact score, float64)", ""]
    lines += [
        f"diffusers {v['diffusers']} (the last release with the Flax schedulers), flax "
        f"{v['flax']}, jax {v['jax']}. Setup: {h['setup']}.",
        "",
        "Time points: diffusers' DPM-Solver `linspace` spacing and DDIM's `leading` spacing "
        "are uniform in t (integer timesteps, t = (i+1)/1000), ours default to the log-SNR "
        "grid. So each algorithm runs three ways: diffusers; ours on exactly diffusers' time "
        "points (a grid of given times, in this script); ours on its log-SNR grid.",
        "",
        f"### Pathwise error (n = {h['n']}, same initial states, reference as above)",
        "",
    ]
    evals = sorted({e["evals"] for c in h["curves"].values() for e in c})
    lines.append("| sampler | observed order | " + " | ".join(map(str, evals)) + " |")
    lines.append("|---|---|" + "---|" * len(evals))
    for name, pts in h["curves"].items():
        by = {q["evals"]: q["error"] for q in pts}
        cells = [f"{by[e]:.2e}" if e in by else "" for e in evals]
        lines.append(
            f"| {name} | {h['observed_order'].get(name, '')} | " + " | ".join(cells) + " |"
        )
    lines += ["", "Largest |diffusers - ours| over all samples, on the same time points:", ""]
    for name in ("DDIM", "DPM-Solver++(2M)", "DPM-Solver++(3M)"):
        d = {k: x for k, x in h["max_abs_difference_same_times"].items() if k.startswith(name)}
        cells = ", ".join(f"{x:.1e} ({k[len(name) + 2 : -1]})" for k, x in d.items())
        lines.append(f"- {name}: {cells}")
    dd = h["dist"]
    fl = dd["floor"]
    lines += ["", f"### Sliced Wasserstein-2 (n = {dd['n']}, float64)", ""]
    lines += [f"floor {fl['mean']:.4f} ± {fl['sd']:.4f} ({fl['repeats']} repeats)", ""]
    ev = sorted({q["evals"] for c in dd["curves"].values() for q in c})
    lines.append("| sampler | " + " | ".join(f"SW2 at {e}" for e in ev) + " |")
    lines.append("|---|" + "---|" * len(ev))
    for name, pts in dd["curves"].items():
        by = {q["evals"]: q["sw2"] for q in pts}
        lines.append(f"| {name} | " + " | ".join(f"{by[e]:.4f}" for e in ev) + " |")
    return lines + [""]


def _report_trained(tr: dict) -> list[str]:
    lines = ["## Trained models (float32; no exact score)", ""]
    lines.append(
        "Pathwise error: median per-sample RMS distance to a PF-ODE solve of the same trained "
        "score from the same initial states (Tsit5, rtol = atol = 1e-6; its evaluations in the "
        "first row). Samplers on the log-SNR grid; Heun on the EDM grid at evaluations // 2 "
        "steps."
    )
    lines.append("")
    for key, title, q in (("swiss_roll", "Swiss roll", "SW2"), ("digits", "8x8 digits", "FD")):
        t = tr[key]
        fl = t["floor"]
        sd_ = f" ± {fl['sd']:.4f}" if fl.get("sd") else ""
        what = fl["what"] if "what" in fl else f"{fl['repeats']} repeats"
        lines += [f"### {title} (n = {t['n']})", "", f"Model: {t['model']}."]
        lines += [f"{q}: {t['quality']}; floor {fl['mean']:.4f}{sd_} ({what})", ""]
        lines.append(f"| sampler | error (evaluations) | {q} (evaluations) |")
        lines.append("|---|---|---|")
        for name, pts in t["rows"].items():
            err = ", ".join(f"{p['error']:.2e} ({p['evals']:.0f})" for p in pts)
            qual = ", ".join(f"{p['quality']:.4f} ({p['evals']:.0f})" for p in pts)
            lines.append(f"| {name} | {err} | {qual} |")
        lines.append("")
    return lines


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = results.get("diffusers")
    fig, axes = plt.subplots(1, 3 if h else 2, figsize=(18 if h else 12, 4.5))
    if h:
        colors = {"DDIM": "C0", "DPM-Solver++(2M)": "C1", "DPM-Solver++(3M)": "C2"}
        styles = {"diffusers": ("--", "x"), "ours, diffusers' times": ("-", "o"),
                  "ours, log-SNR grid": (":", "s")}  # fmt: skip
        for name, pts in h["curves"].items():
            algo, how = name.split(": ")
            ls, mk = styles[how]
            axes[2].loglog([q["evals"] for q in pts], [q["error"] for q in pts], ls, marker=mk,
                           ms=4, color=colors[algo], label=name)  # fmt: skip
        title = f"vs diffusers {h['versions']['diffusers']} (Flax), same score"
        axes[2].set(xlabel="score evaluations", ylabel="median error vs reference", title=title)
        axes[2].legend(fontsize=6)
    for name, pts in results["path"]["curves"].items():
        style = "--" if name.startswith("NumPy") else "-"
        axes[0].loglog([q["evals"] for q in pts], [q["error"] for q in pts], style, marker="o",
                       ms=3, label=name)  # fmt: skip
    axes[0].set(xlabel="score evaluations", ylabel="median error vs reference",
                title="pathwise error (same initial states)")  # fmt: skip
    axes[0].legend(fontsize=7)
    d = results["dist"]
    for name, pts in d["curves"].items():
        axes[1].loglog(
            [q["evals"] for q in pts], [q["sw2"] for q in pts], marker="o", ms=3, label=name
        )
    fl = d["floor"]
    axes[1].axhspan(fl["mean"] - 2 * fl["sd"], fl["mean"] + 2 * fl["sd"], color="grey", alpha=0.3,
                    label="floor ± 2 SD")  # fmt: skip
    axes[1].set(xlabel="score evaluations", ylabel="sliced W2 to exact samples",
                title=f"distributional (n = {d['n']})")  # fmt: skip
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--part", choices=("path", "dist", "speed", "speed_mlp", "diffusers", "trained")
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--rerun",
        nargs="+",
        choices=("path", "dist", "speed", "speed_mlp", "diffusers", "trained"),
        help="rerun only these parts",
    )
    args = ap.parse_args()
    if args.part:
        fn = {"path": part_path, "dist": part_dist, "speed": part_speed,
              "speed_mlp": lambda quick: part_speed(quick, network=True),
              "diffusers": part_diffusers, "trained": part_trained}[args.part]  # fmt: skip
        print("RESULT " + json.dumps(fn(args.quick)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import environment

    name = "few_step_quick" if args.quick else "few_step"
    results = {"command": "python benchmarks/few_step.py" + (" --quick" if args.quick else ""),
               "environment": environment()}  # fmt: skip
    parts = ("path", "dist", "speed", "speed_mlp", "diffusers", "trained")
    if args.rerun:
        results = {**json.loads((OUT / f"{name}.json").read_text()), **results}
        parts = args.rerun
    for part in parts:
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--part", part] + (["--quick"] if args.quick else [])
        results["command"] += f" (then --rerun {part})" if args.rerun else ""
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"part {part} failed")
        results[part] = json.loads(line[-1][len("RESULT ") :])
        results[part]["wall_s"] = time.perf_counter() - t0
        print(f"{part}: {results[part]['wall_s']:.0f} s", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(results, indent=1))
    (OUT / f"{name}.md").write_text(report(results))
    plot(results, OUT / f"{name}.png")
    print(report(results))


if __name__ == "__main__":
    main()
