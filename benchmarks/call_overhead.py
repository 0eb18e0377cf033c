"""The fixed cost of one `sample()` call, apart from the sampling: what a small batch pays.

    python benchmarks/call_overhead.py [--batch 10000] [--steps 100] [--repeats 5]

Two measurements:

1. Host time per call on a tiny problem (8 samples, 1 Euler step), where the run itself
   is negligible: the public `sample()`, the jitted program it dispatches called directly
   (`eqx.filter_jit`'s flattening of the SDE, score and sampler included), the sampler's
   argument check, and a plain `jax.jit` of the same `sample()` closure (one compiled
   program's dispatch: the floor).
2. Fixed-step `ReverseSDE(Euler)` at `--batch`, `--steps` against the `lax.scan` loop, with
   the grid Brownian path as the sampler builds it (queries unchecked: the solve steps on
   its own grid) and with `check_queries=True` (one `eqx.error_if` per step).

Writes JSON to benchmarks/results/<platform>/call_overhead.json.
"""

import argparse
import json
import pathlib
import time

import diffrax as dfx
import equinox as eqx
import jax
import jax.random as jr
from _common import environment, time_call
from _references import scan_euler_maruyama

import scoresde as sd
import scoresde._sampler._reverse_sde as reverse_sde
from scoresde._sampler._sample import _sample_jit


def host_us(fn, repeats: int, number: int = 200) -> float:
    """Best-of-`repeats` mean microseconds per call over `number` calls (after a warm-up)."""
    jax.block_until_ready(fn())
    best = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            jax.block_until_ready(fn())
        best.append((time.perf_counter() - t0) / number * 1e6)
    return min(best)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    sde = sd.VPSDE()
    score = sd.NoisePrediction(sd.nn.TimeMLP(2, key=jr.key(0)), sde)
    key = jr.key(1)

    tiny = sd.ReverseSDE(dfx.Euler(), num_steps=1)
    closure = jax.jit(lambda k: sd.sample(sde, score, tiny, (8, 2), key=k))
    host = {
        "sample()": lambda: sd.sample(sde, score, tiny, (8, 2), key=key),
        "jitted program alone (_sample_jit)": lambda: _sample_jit(
            sde, score, tiny, (2,), key, 8, None, None, None
        )[0],
        "sampler.check(sde)": lambda: tiny.check(sde),
        "jax.jit(sample closure) (floor)": lambda: closure(key),
    }
    host_rows = [{"name": n, "us_per_call": host_us(f, 3)} for n, f in host.items()]

    shape = (args.batch, 2)
    ref = eqx.filter_jit(lambda score, k: scan_euler_maruyama(sde, score, shape, args.steps, k))
    sampler = sd.ReverseSDE(dfx.Euler(), num_steps=args.steps)
    grid_path = reverse_sde.GridBrownianPath
    checked = lambda *a, **kw: grid_path(*a)  # noqa: E731  (check_queries defaults to True)
    runs = {
        "lax.scan Euler-Maruyama (reference)": lambda: ref(score, key),
        "ReverseSDE Euler (grid path, unchecked)": lambda: sd.sample(
            sde, score, sampler, shape, key=key
        ),
    }
    step_rows = []
    for name, fn in runs.items():
        first, median = time_call(lambda _, fn=fn: fn(), None, repeats=args.repeats)
        step_rows.append({"name": name, "first_s": first, "median_s": median})
    reverse_sde.GridBrownianPath = checked
    try:
        first, median = time_call(
            lambda _: sd.sample(sde, score, sampler, shape, key=jr.key(2)),
            None,
            repeats=args.repeats,
        )
    finally:
        reverse_sde.GridBrownianPath = grid_path
    step_rows.append(
        {"name": "ReverseSDE Euler (grid path, checked)", "first_s": first, "median_s": median}
    )
    base = step_rows[0]["median_s"]
    for r in step_rows:
        r["ratio_to_reference"] = r["median_s"] / base

    env = environment()
    print(f"{env['device']} (JAX {env['jax']})")
    print("host time per call, 8 samples x 1 step:")
    for r in host_rows:
        print(f"  {r['name']:40s} {r['us_per_call']:9.1f} us")
    print(f"batch {args.batch}, {args.steps} steps (median of {args.repeats}):")
    for r in step_rows:
        print(f"  {r['name']:40s} {r['median_s'] * 1e3:9.3f} ms  {r['ratio_to_reference']:.2f}x")
    out = pathlib.Path(__file__).resolve().parent / "results" / env["platform"]
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "environment": env,
        "args": vars(args),
        "host": host_rows,
        "steps": step_rows,
        # what sample() costs beyond dispatching one compiled program
        "host_overhead_us": host_rows[0]["us_per_call"] - host_rows[-1]["us_per_call"],
    }
    (out / "call_overhead.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
