"""What conditioning costs `sample()`: the same sampler with and without `condition=`.

    python benchmarks/conditioning_overhead.py [--batch 10000] [--steps 100] [--rounds 7]

`ReverseSDE(Euler)` with the 3x256 `TimeMLP` (NoisePrediction, VP SDE), `--batch` samples,
`--steps` steps. Four configurations, timed in interleaved rounds (A, B, C, D, A, B, ...)
so that a change in the machine's load hits them alike; each ratio is the median over
rounds of the per-round ratio:

- `plain`: the unconditional network, no `condition=`;
- `plumbing`: the same network behind a score `(t, x, c) -> net(t, x)` that ignores its
  condition, with `condition=labels`: the cost of the condition path alone (per-sample
  labels sharded with the keys, bound into the score);
- `conditional`: `TimeMLP(num_classes=10)`, its label embedding concatenated to the first
  layer's input, with `condition=labels`;
- `guided`: `ClassifierFreeGuidance` of that network (two network evaluations per step).

Compile time (first call minus a warm one) is reported apart. Writes JSON to
benchmarks/results/<platform>/conditioning_overhead.json.
"""

import argparse
import json
import pathlib
import statistics
import time

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from _common import environment

import scoresde as sd


class IgnoreCondition(eqx.Module):
    score: eqx.Module

    def __call__(self, t, x, c):
        return self.score(t, x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    sde = sd.VPSDE()
    sampler = sd.ReverseSDE(dfx.Euler(), num_steps=args.steps)
    shape = (args.batch, 2)
    labels = jnp.arange(args.batch) % 10
    plain = sd.NoisePrediction(sd.nn.TimeMLP(2, key=jr.key(0)), sde)
    conditional = sd.NoisePrediction(sd.nn.TimeMLP(2, num_classes=10, key=jr.key(0)), sde)
    configs = {
        "plain": lambda k: sd.sample(sde, plain, sampler, shape, key=k),
        "plumbing": lambda k: sd.sample(
            sde, IgnoreCondition(plain), sampler, shape, key=k, condition=labels
        ),
        "conditional": lambda k: sd.sample(
            sde, conditional, sampler, shape, key=k, condition=labels
        ),
        "guided": lambda k: sd.sample(
            sde,
            sd.ClassifierFreeGuidance(conditional, scale=2.0, null_condition=10),
            sampler,
            shape,
            key=k,
            condition=labels,
        ),
    }
    first = {}
    for name, fn in configs.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(jr.key(1)))
        first[name] = time.perf_counter() - t0
    runs = {name: [] for name in configs}
    for r in range(args.rounds):
        for name, fn in configs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(jr.key(2 + r)))
            runs[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(v) for name, v in runs.items()}

    def ratio(name):
        return statistics.median(a / b for a, b in zip(runs[name], runs["plain"], strict=True))

    result = {
        "environment": environment(),
        "command": (
            f"python benchmarks/conditioning_overhead.py --batch {args.batch} --steps "
            f"{args.steps} --rounds {args.rounds}"
        ),
        "sampler": f"ReverseSDE(Euler, num_steps={args.steps})",
        "network": "NoisePrediction(TimeMLP(2), VPSDE()): 3 x 256, ReLU",
        "batch": args.batch,
        "median_s": median,
        "compile_s": {name: max(first[name] - median[name], 0.0) for name in configs},
        "runs_s": runs,
        "ratio_to_plain": {name: ratio(name) for name in configs if name != "plain"},
    }
    for name in configs:
        extra = "" if name == "plain" else f"  ratio {result['ratio_to_plain'][name]:.3f}"
        print(
            f"{name:12s} run {median[name]:.3f} s  compile {result['compile_s'][name]:.2f} s{extra}"
        )
    out = pathlib.Path(__file__).parent / "results" / jax.default_backend()
    out.mkdir(parents=True, exist_ok=True)
    (out / "conditioning_overhead.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
