"""Training throughput: `scoresde.fit` against a plain `jax.jit` + Optax loop with the same
network (the SGM-from-scratch tutorial's 3x256 MLP), objective (DSM, VP SDE), batch size and
optimiser.

    python benchmarks/train_throughput.py [--steps 2000] [--batch 512] [--repeats 3]

The plain loop is what a user writes by hand: one jitted step per Python iteration, the
minibatch indices from a NumPy permutation per epoch. Prints a table and writes JSON to
benchmarks/results/<platform>/train_throughput.json.
"""

import argparse
import json
import pathlib
import statistics
import time

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
import optax
from _common import environment

import scoresde as sd


def make_plain_loop(model, objective, data, optimizer):
    """A hand-written loop: `jax.jit` step, host-side epoch permutation. Returns
    `loop(steps, batch_size, key)`; the jitted step is built once, here, so that calling
    the loop again does not trace and compile it again (a fresh `jax.jit` of a fresh inner
    function per call would, and the timings would then include a compilation each)."""
    params0, static = eqx.partition(model, eqx.is_inexact_array)

    @jax.jit
    def step(params, opt_state, idx, k):
        def loss_fn(p):
            return objective(eqx.combine(p, static), data[idx], k)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def loop(steps, batch_size, key):
        params, opt_state = params0, optimizer.init(params0)
        rng = np.random.default_rng(0)
        per_epoch = data.shape[0] // batch_size
        losses = []
        for i in range(steps):
            if i % per_epoch == 0:
                perm = rng.permutation(data.shape[0])
            idx = perm[(i % per_epoch) * batch_size : (i % per_epoch + 1) * batch_size]
            params, opt_state, loss = step(params, opt_state, idx, jr.fold_in(key, i))
            losses.append(loss)
        return jax.block_until_ready((params, losses[-1]))

    return loop


def plain_loop(model, objective, data, optimizer, steps, batch_size, key):
    """`make_plain_loop(...)(steps, batch_size, key)`: one call, compiling its step."""
    return make_plain_loop(model, objective, data, optimizer)(steps, batch_size, key)


def timed(fn, repeats):
    """(first call seconds, including compilation; median of `repeats` warm calls)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


REFERENCE = "plain jax.jit + optax loop (reference)"
CASES = (
    REFERENCE,
    "fit, no EMA",
    "fit, EMA 0.999 (default)",
    "fit, no EMA, 1 step per dispatch",
)


def run(steps: int = 2000, batch: int = 512, repeats: int = 3, cases=CASES) -> dict:
    """Times each of `cases` (names from `CASES`; the reference is always run first)."""
    data = sd.datasets.swiss_roll(20_000, key=jr.key(0), noise=0.5)
    sde = sd.VPSDE()
    model = sd.nn.TimeMLP(2, key=jr.key(1))
    objective = sd.DenoisingScoreMatching(sde)
    optimizer = optax.adam(1e-3)
    key = jr.key(2)

    def fit(**kw):
        def call():
            result = sd.fit(
                model,
                objective,
                data,
                optimizer=optimizer,
                num_steps=steps,
                batch_size=batch,
                key=key,
                progress=False,
                **kw,
            )
            jax.block_until_ready(eqx.filter(result.model, eqx.is_array))

        return call

    reference = make_plain_loop(model, objective, data, optimizer)
    available = {
        REFERENCE: lambda: reference(steps, batch, key),
        "fit, no EMA": fit(ema_rate=None),
        "fit, EMA 0.999 (default)": fit(),
        "fit, no EMA, 1 step per dispatch": fit(ema_rate=None, steps_per_dispatch=1),
    }
    names = [REFERENCE] + [c for c in cases if c != REFERENCE]
    rows = []
    for name in names:
        fn = available[name]
        first, median = timed(fn, repeats)
        rows.append({"case": name, "first_s": first, "median_s": median})
    ref = rows[0]["median_s"]
    for r in rows:
        r["steps_per_s"] = steps / r["median_s"]
        r["ratio_to_reference"] = r["median_s"] / ref
        # The first call also runs the steps; what is left over is compilation and tracing.
        r["compile_s"] = max(r["first_s"] - r["median_s"], 0.0)
    config = {"steps": steps, "batch": batch, "repeats": repeats, "width": 256, "depth": 3}
    return {"benchmark": "train_throughput", **environment(), "config": config, "rows": rows}


def print_table(result: dict) -> None:
    print(
        f"| {result['config']['steps']} steps, batch {result['config']['batch']} "
        "| steps/s | ratio to reference | compile s |"
    )
    print("|---|---|---|---|")
    for r in result["rows"]:
        print(
            f"| {r['case']} | {r['steps_per_s']:.0f} | {r['ratio_to_reference']:.2f} "
            f"| {r['compile_s']:.2f} |"
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = run(args.steps, args.batch, args.repeats)
    print_table(result)
    out = pathlib.Path(__file__).parent / "results" / result["platform"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_throughput.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
