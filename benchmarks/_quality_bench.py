"""Part 3 of `run.py`: sample quality against the number of score evaluations.

For each sampler and time grid, samples at a range of step counts (fixed-step samplers) or
tolerances (adaptive ones) are compared with a reference sample by the energy distance and
the sliced Wasserstein distance. The noise floor is the same distance between independent
exact draws and the same reference: a sampler "reaches the floor" at the fewest score
evaluations from which its energy distance stays at or below `floor mean + 2 SD` for every
larger budget tested (the rule, also written into the JSON).
"""

import statistics
import time
import traceback

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import scoresde as sd


FLOOR_RULE = (
    "fewest mean score evaluations from which the energy distance stays <= floor mean + 2 SD "
    "of the floor draws for every larger budget tested"
)
GRIDS = {"uniform": sd.UniformGrid(), "edm": sd.EDMGrid(), "logsnr": sd.LogSNRGrid()}


def mixture_params():
    """tests/conftest.py's 3-component 2-D mixture with unequal weights, full covariances."""
    weights = jnp.array([0.5, 0.3, 0.2])
    means = jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]])
    covariances = jnp.stack(
        [0.3 * jnp.eye(2), jnp.array([[0.5, 0.2], [0.2, 0.3]]), 0.2 * jnp.eye(2)]
    )
    return weights, means, covariances


FIXED = (
    "ReverseSDE Euler",
    "ReverseSDE Heun",
    "PF-ODE Heun",
    "PredictorCorrector",
    "AnnealedLangevin",
    "Langevin",
)
ADAPTIVE = ("ReverseSDE Heun adaptive", "PF-ODE Tsit5 adaptive")


TWO_EVALS = ("ReverseSDE Heun", "PF-ODE Heun", "PredictorCorrector")


def curve_specs(steps, tols, grids=tuple(GRIDS), fixed=FIXED, adaptive=ADAPTIVE) -> list[dict]:
    """Every fixed-step sampler on every grid (Langevin has none) over `steps`, halved for
    the samplers that evaluate the score twice per step so that every curve spans the same
    range of evaluations; every adaptive sampler over `tols`."""
    specs = []
    for name in fixed:
        n = sorted({max(k // 2, 2) for k in steps}) if name in TWO_EVALS else list(steps)
        specs.append(
            {"sampler": name, "grids": ["-"] if name == "Langevin" else list(grids), "steps": n}
        )
    return specs + [{"sampler": name, "tols": list(tols)} for name in adaptive]


def fixed_sampler(name: str, steps: int, grid, langevin_step: float) -> sd.AbstractSampler:
    """`steps` is the number of time steps (or Langevin steps); evaluations per step vary."""
    return {
        "ReverseSDE Euler": lambda: sd.ReverseSDE(dfx.Euler(), num_steps=steps, grid=grid),
        "ReverseSDE Heun": lambda: sd.ReverseSDE(dfx.Heun(), num_steps=steps, grid=grid),
        "PF-ODE Heun": lambda: sd.ProbabilityFlowODE(dfx.Heun(), num_steps=steps, grid=grid),
        "PredictorCorrector": lambda: sd.PredictorCorrector(num_steps=steps, grid=grid),
        "AnnealedLangevin": lambda: _annealed(steps, grid),
        # The score of p_eps, from the prior; no grid.
        "Langevin": lambda: sd.Langevin(num_steps=steps, step_size=langevin_step),
    }[name]()


def _annealed(steps: int, grid, steps_per_level: int = 2) -> sd.AnnealedLangevin:
    """`steps // 2` noise levels, 2 Langevin steps at each, and the step epsilon = 2 s(eps)^2
    (so alpha = 2 sigma_i^2 at every level). NCSNv2's technique 3
    (`scoresde.langevin_step_size`) assumes a geometric ladder, which the VP SDE's s(t) on
    these grids is not: with the ladder's mean ratio it picked epsilon ~ 1.7e-5 and, on the
    mixture with 3000 samples, the energy distance was 0.098 at 100 evaluations, against
    0.027 / 0.016 / 0.009 for epsilon = 0.5 / 1 / 2 s(eps)^2 (at 500 evaluations: 0.002 /
    0.0006 / 0.0000)."""
    sde = sd.VPSDE(beta_min=0.1, beta_max=20.0)
    levels = max(steps // steps_per_level, 2)
    step = 2 * float(sde.std(sde.default_eps)) ** 2
    return sd.AnnealedLangevin(
        num_levels=levels, steps_per_level=steps_per_level, step_size=step, grid=grid
    )


def adaptive_sampler(name: str, tol: float) -> sd.AbstractSampler:
    return {
        "ReverseSDE Heun adaptive": lambda: sd.ReverseSDE(
            dfx.Heun(), stepsize_controller=dfx.PIDController(rtol=tol, atol=tol), brownian="tree"
        ),
        "PF-ODE Tsit5 adaptive": lambda: sd.ProbabilityFlowODE(
            dfx.Tsit5(), stepsize_controller=dfx.PIDController(rtol=tol, atol=tol)
        ),
    }[name]()


def _distances(x, reference, key) -> dict:
    return {
        "energy": float(sd.metrics.energy_distance(x, reference)),
        "sliced_w2": float(sd.metrics.sliced_wasserstein(x, reference, key=key)),
    }


def noise_floor(draws, reference, key) -> dict:
    """Distances of independent exact draws to the reference: what the estimators resolve."""
    vals = [_distances(d, reference, key) for d in draws]
    energy = [v["energy"] for v in vals]
    sw = [v["sliced_w2"] for v in vals]
    sd_e = statistics.stdev(energy) if len(energy) > 1 else 0.0
    mean_e = statistics.fmean(energy)
    return {
        "energy_values": energy,
        "energy_mean": mean_e,
        "energy_sd": sd_e,
        "energy_threshold": mean_e + 2 * sd_e,
        "sliced_w2_values": sw,
        "sliced_w2_mean": statistics.fmean(sw),
        "sliced_w2_sd": statistics.stdev(sw) if len(sw) > 1 else 0.0,
        "num_draws": len(draws),
        "rule": FLOOR_RULE,
    }


def evals_to_floor(points, threshold) -> float | None:
    """The rule of `FLOOR_RULE` on one curve; a diverged or failed point counts as above."""
    pts = sorted(
        (p for p in points if "score_evals_mean" in p), key=lambda p: p["score_evals_mean"]
    )
    best = None
    for p in reversed(pts):
        if p.get("energy") is not None and p["energy"] <= threshold:
            best = p["score_evals_mean"]
        else:
            break
    return best


def run_curves(sde, score, reference, floor, *, num, curves, langevin_step, key, log):
    """One curve per (sampler, grid) of `curves` (see `curve_specs`); each point is `num`
    samples from the same key."""
    key_sample, key_metric = jr.split(key)
    shape = (num, *reference.shape[1:])
    out = []

    def point(sampler, param):
        t0 = time.perf_counter()
        try:
            res = sd.sample(sde, score, sampler, shape, key=key_sample, return_info=True)
            evals = np.asarray(res.stats["num_score_evals"])
            p = {
                "param": param,
                "score_evals_mean": float(evals.mean()),
                "score_evals_max": float(evals.max()),
            }
            dist = _distances(res.samples, reference, key_metric)
            if all(np.isfinite(v) for v in dist.values()):
                p.update(dist)
            else:  # samples so far out that the distances overflow float32
                p.update({"energy": None, "sliced_w2": None, "diverged": True})
        except Exception as e:
            p = {"param": param, "error": f"{type(e).__name__}: {e}"[:1000]}
            log(f"      failed: {p['error']}\n{traceback.format_exc(limit=2)}")
        p["seconds_incl_compile"] = time.perf_counter() - t0
        return p

    for spec in curves:
        name = spec["sampler"]
        if "tols" in spec:
            pts = [point(adaptive_sampler(name, tol), tol) for tol in spec["tols"]]
            out.append(
                {"sampler": name, "grid": "adaptive", "param_name": "rtol=atol", "points": pts}
            )
            log(f"    {name}: " + _fmt(pts))
            continue
        for grid_name in spec["grids"]:
            grid = GRIDS.get(grid_name)
            pts = [point(fixed_sampler(name, n, grid, langevin_step), n) for n in spec["steps"]]
            out.append(
                {"sampler": name, "grid": grid_name, "param_name": "num_steps", "points": pts}
            )
            log(f"    {name} [{grid_name}]: " + _fmt(pts))
    for c in out:
        c["evals_to_floor"] = evals_to_floor(c["points"], floor["energy_threshold"])
    return out


def _fmt(pts):
    def one(p):
        if "error" in p:
            return "error"
        if p.get("energy") is None:
            return f"{p['score_evals_mean']:.0f}->diverged"
        return f"{p['score_evals_mean']:.0f}->{p['energy']:.4f}"

    return ", ".join(one(p) for p in pts)


def _floor_and_curves(cfg, part, sde, score, draw, key, log):
    """The noise floor (`cfg["floor_draws"]` draws of `draw(key, n)` against a reference
    draw) and every curve of `part` against that reference."""
    keys = jr.split(key, cfg["floor_draws"] + 2)
    n = cfg["num"]
    reference = draw(keys[0], n)
    floor = noise_floor([draw(k, n) for k in keys[2:]], reference, jr.key(5))
    log(f"    floor: energy {floor['energy_mean']:.5f} +- {floor['energy_sd']:.5f}")
    curves = run_curves(
        sde, score, reference, floor, key=keys[1], log=log, **_curve_args(cfg, part)
    )
    return floor, curves


def run_mixture(cfg, log=print) -> dict:
    """(a) The exact score of tests/conftest.py's 3-component mixture; reference and floor
    draws are exact samples of p_0 (`score.sample(key, n, 0.0)`)."""
    sde = sd.VPSDE(beta_min=0.1, beta_max=20.0)
    weights, means, covs = mixture_params()
    score = sd.GaussianMixtureScore(sde, weights=weights, means=means, covariances=covs)
    draw = lambda k, n: score.sample(k, n, 0.0)  # noqa: E731
    floor, curves = _floor_and_curves(cfg, "mixture", sde, score, draw, jr.key(100), log)
    return {
        "target": "3-component 2-D Gaussian mixture, exact score",
        "floor": floor,
        "curves": curves,
    }


def train_swiss_roll(steps: int, key):
    """As `python -m scoresde demo`: NoisePrediction(TimeMLP(2, num_fourier=4)), DSM on the
    VP SDE, Adam with cosine decay from 2e-3, batch 512, 20 000 training points."""
    key_data, key_net, key_fit = jr.split(key, 3)
    data = sd.datasets.swiss_roll(20_000, key=key_data, noise=0.5)
    sde = sd.VPSDE()
    model = sd.NoisePrediction(sd.nn.TimeMLP(2, num_fourier=4, key=key_net), sde)
    if steps == 0:  # the smoke run: the harness only, an untrained model
        return sde, model, 0.0
    t0 = time.perf_counter()
    result = sd.fit(
        model,
        sd.DenoisingScoreMatching(sde),
        data,
        optimizer=optax.adam(optax.cosine_decay_schedule(2e-3, steps, alpha=0.05)),
        num_steps=steps,
        batch_size=512,
        key=key_fit,
        steps_per_dispatch=min(500, steps),
        progress=False,
    )
    jax.block_until_ready(jax.tree.leaves(result.model))
    return sde, result.model, time.perf_counter() - t0


def run_swiss_roll(cfg, log=print) -> dict:
    """(b) A model trained on the swiss roll; reference and floor draws are fresh draws of
    the data distribution (independent of the training set)."""
    steps = cfg["swiss_roll"]["train_steps"]
    sde, model, secs = train_swiss_roll(steps, jr.key(0))
    log(f"    trained {steps} steps in {secs:.1f} s")
    draw = lambda k, n: sd.datasets.swiss_roll(n, key=k, noise=0.5)  # noqa: E731
    floor, curves = _floor_and_curves(cfg, "swiss_roll", sde, model, draw, jr.key(200), log)
    return {
        "target": "swiss roll (noise 0.5), trained NoisePrediction(TimeMLP(2, num_fourier=4))",
        "train_steps": steps,
        "train_seconds": secs,
        "floor": floor,
        "curves": curves,
    }


def _curve_args(cfg, target):
    return {
        "num": cfg["num"],
        "curves": cfg[target]["curves"],
        "langevin_step": cfg[target]["langevin_step"],
    }


__all__ = ["FLOOR_RULE", "curve_specs", "evals_to_floor", "run_mixture", "run_swiss_roll"]
