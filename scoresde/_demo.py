"""`python -m scoresde demo`: learn the swiss roll, sample it three ways, measure and plot."""

import pathlib
import time

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from . import datasets, metrics, nn, plotting
from ._objective import DenoisingScoreMatching
from ._sampler import PredictorCorrector, ProbabilityFlowODE, ReverseSDE, sample
from ._score import NoisePrediction
from ._sde import VPSDE
from ._train import fit


def _samplers() -> dict:
    return {
        "Reverse SDE (Euler, 500 steps)": ReverseSDE(dfx.Euler(), num_steps=500),
        "PF-ODE (Tsit5, adaptive)": ProbabilityFlowODE(),
        "Predictor-corrector (250 steps)": PredictorCorrector(num_steps=250),
    }


def _metric_row(name, x, held, key) -> dict:
    return {
        "sampler": name,
        "energy": float(metrics.energy_distance(x, held)),
        "mmd": float(metrics.mmd(x, held)),
        "sw2": float(metrics.sliced_wasserstein(x, held, key=key)),
    }


def _print_table(rows: list[dict]) -> None:
    cols = f"{'energy dist':>12s} {'MMD':>10s} {'sliced W2':>10s} {'evals':>7s} {'time s':>7s}"
    print(f"{'':34s} {cols}")
    for r in rows:
        evals = "" if r.get("evals") is None else f"{r['evals']:.0f}"
        secs = "" if r.get("seconds") is None else f"{r['seconds']:.1f}"
        print(
            f"{r['sampler']:34s} {r['energy']:12.5f} {r['mmd']:10.5f} {r['sw2']:10.4f} "
            f"{evals:>7s} {secs:>7s}"
        )


def run(
    out_dir: str = "demo_output", num: int = 5000, seed: int = 0, steps: int = 6000
) -> pathlib.Path:
    """Trains a noise-prediction MLP on the swiss roll with denoising score matching (VP
    SDE), samples it with three samplers, prints sample-quality metrics against held-out
    data (with the floor of a second draw of the data), and writes figures and a GIF."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key_data, key_net, key_fit, key_sample, key_metric = jr.split(jr.key(seed), 5)

    data = datasets.swiss_roll(20_000 + 2 * num, key=key_data, noise=0.5)
    train, held, floor_draw = data[:20_000], data[20_000 : 20_000 + num], data[20_000 + num :]
    sde = VPSDE()
    model = NoisePrediction(nn.TimeMLP(2, width=256, depth=3, num_fourier=4, key=key_net), sde)
    start = time.perf_counter()
    result = fit(
        model,
        DenoisingScoreMatching(sde),
        train,
        optimizer=optax.adam(optax.cosine_decay_schedule(2e-3, steps, alpha=0.05)),
        num_steps=steps,
        batch_size=512,
        key=key_fit,
        steps_per_dispatch=500,
    )
    train_seconds = time.perf_counter() - start
    print(f"trained {steps} steps in {train_seconds:.1f} s ({steps / train_seconds:.0f} steps/s)")

    rows = [_metric_row("second draw of the data (floor)", floor_draw, held, key_metric)]
    samples = {}
    for name, sampler in _samplers().items():
        start = time.perf_counter()
        res = sample(sde, result.model, sampler, (num, 2), key=key_sample, return_info=True)
        jax.block_until_ready(res.samples)
        row = _metric_row(name, res.samples, held, key_metric)
        row["evals"] = float(jnp.mean(res.stats["num_score_evals"]))
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        samples[name] = res.samples
    print(f"\n{num} samples each, against {num} held-out points (lower is better):")
    _print_table(rows)

    area = ((-2.5, 3.0), (-2.7, 3.2))
    notes = {r["sampler"]: f"energy {r['energy']:.4f}" for r in rows[1:]}
    fig = plotting.plot_comparison(samples, reference=held, area=area, metrics=notes)
    plotting.save(fig, out / "samplers.png")
    plotting.save(plotting.plot_loss(result.losses), out / "loss.png")
    score_fig = plotting.plot_score(
        result.model, 0.05, area=area, num=24, normalise=True, reference=held
    )
    plotting.save(score_fig, out / "score.png")
    traj = sample(
        sde,
        result.model,
        ReverseSDE(dfx.Euler(), num_steps=500),
        (2000, 2),
        key=key_sample,
        saveat=51,
        return_info=True,
    )
    plotting.save(
        plotting.plot_trajectories(traj.trajectory, traj.ts, num=12, reference=held),
        out / "paths.png",
    )
    plotting.animate_reverse(
        traj.trajectory[:1000], out / "reverse.gif", ts=traj.ts, area=area, reference=held, hold=1.5
    )
    np.save(out / "samples.npy", np.asarray(samples[next(iter(samples))]))
    print(f"\nwrote samplers.png, loss.png, score.png, paths.png, reverse.gif to {out}/")
    return out
