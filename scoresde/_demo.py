"""`python -m scoresde demo`: every sampler on a 2-D Gaussian mixture with its exact score."""

import pathlib
import time

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr

from ._sampler import (
    AnnealedLangevin,
    Langevin,
    PredictorCorrector,
    ProbabilityFlowODE,
    ReverseSDE,
    sample,
)
from ._score import GaussianMixtureScore
from ._sde import VPSDE


def _samplers(sde: VPSDE) -> dict:
    return {
        "ReverseSDE Euler, 500 steps": ReverseSDE(dfx.Euler(), num_steps=500),
        "ReverseSDE Heun, 200 steps": ReverseSDE(dfx.Heun(), num_steps=200),
        "ReverseSDE Heun, adaptive": ReverseSDE(
            dfx.Heun(), stepsize_controller=dfx.PIDController(rtol=1e-2, atol=1e-2)
        ),
        "PF-ODE Tsit5, adaptive": ProbabilityFlowODE(),
        "PF-ODE Heun, 50 steps": ProbabilityFlowODE(dfx.Heun(), num_steps=50),
        "Langevin, 1000 steps": Langevin(num_steps=1000, step_size=0.01, init_uniform=(-4, 4)),
        "Annealed Langevin, 10 x 100": AnnealedLangevin(
            num_levels=10, steps_per_level=100, step_size=2e-3, eps=float(sde.t_from_sigma(0.1))
        ),
        "Predictor-corrector, 300 steps": PredictorCorrector(num_steps=300),
    }


def run(out_dir: str = "demo_output", num: int = 5000, seed: int = 0) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sde = VPSDE(beta_min=0.1, beta_max=20.0)
    weights = jnp.array([0.5, 0.3, 0.2])
    means = jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]])
    covariances = jnp.stack(
        [0.3 * jnp.eye(2), jnp.array([[0.5, 0.2], [0.2, 0.3]]), 0.2 * jnp.eye(2)]
    )
    score = GaussianMixtureScore(sde, weights=weights, means=means, covariances=covariances)
    key_exact, key = jr.split(jr.PRNGKey(seed))
    panels = {"exact samples": score.sample(key_exact, num)}

    print(f"{'sampler':34s} {'seconds':>8s} {'score evals':>12s} {'weights (0.5/0.3/0.2)':>24s}")
    for name, sampler in _samplers(sde).items():
        start = time.perf_counter()
        out = sample(sde, score, sampler, (num, 2), key=key, return_info=True)
        jax.block_until_ready(out.samples)
        seconds = time.perf_counter() - start
        w = jax.vmap(lambda x: score.responsibilities(0.0, x))(out.samples).mean(0)
        evals = float(out.stats["num_score_evals"].mean())
        print(f"{name:34s} {seconds:8.2f} {evals:12.0f} {'/'.join(f'{v:.3f}' for v in w):>24s}")
        panels[name] = out.samples

    fig, axes = plt.subplots(3, 3, figsize=(12, 12), sharex=True, sharey=True)
    for ax, (name, x) in zip(axes.flat, panels.items(), strict=True):
        ax.hist2d(x[:, 0], x[:, 1], bins=80, range=[[-4.5, 4.5], [-4.5, 4.5]])
        ax.set_title(name, fontsize=10)
        ax.set_aspect("equal")
    fig.suptitle(f"{num} samples of a 2-D Gaussian mixture, exact score, VP SDE", fontsize=12)
    fig.tight_layout()
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "samplers.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"wrote {path}")
    return path
