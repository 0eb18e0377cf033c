"""Fixed-step reverse-SDE sampling: the library (grid path and VirtualBrownianTree) against a
hand-written `lax.scan` Euler–Maruyama loop with the same 3x256 MLP score and step count.

    python benchmarks/brownian_path.py [--batch 10000] [--steps 200] [--repeats 5]

`run.py` measures the same rows (and more) as part of every run; this script is the
single-configuration version.

Prints a table and writes JSON to benchmarks/results/<platform>/brownian_path.json.
"""

import argparse
import json
import pathlib

import diffrax as dfx
import equinox as eqx
import jax.random as jr
from _common import environment, time_call
from _references import scan_euler_maruyama

import scoresde as sd


def reference_loop(sde, net, num, steps, key):
    """What a user writes by hand (the SGM-from-scratch tutorial): one batched network call per step
    (`_references.scan_euler_maruyama`, which `run.py` uses too)."""
    return scan_euler_maruyama(sde, net, (num, 2), steps, key)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    sde = sd.VPSDE(beta_min=0.1, beta_max=20.0)
    net = sd.nn.TimeMLP(2, key=jr.PRNGKey(0))
    key = jr.PRNGKey(1)
    shape = (args.batch, 2)

    # The network is an argument of the jitted function, as it is of `sample`, not a
    # constant closed over (which XLA could fold).
    ref_jit = eqx.filter_jit(lambda net, k: reference_loop(sde, net, args.batch, args.steps, k))
    runs = {"lax.scan reference": lambda k: ref_jit(net, k)}
    for brownian in ("grid", "tree"):
        sampler = sd.ReverseSDE(dfx.Euler(), num_steps=args.steps, brownian=brownian)
        runs[f"ReverseSDE(Euler, brownian={brownian!r})"] = lambda k, s=sampler: sd.sample(
            sde, net, s, shape, key=k
        )

    rows = []
    for name, fn in runs.items():
        first, median = time_call(fn, key, repeats=args.repeats)
        rows.append({"name": name, "compile_and_first_s": first, "median_s": median})
    base = rows[0]["median_s"]
    for row in rows:
        row["ratio_to_reference"] = row["median_s"] / base
        row["samples_per_s"] = args.batch / row["median_s"]
        row["us_per_score_eval"] = 1e6 * row["median_s"] / (args.batch * args.steps)

    env = environment()
    print(f"{env['device']}, jax {env['jax']}, batch {args.batch}, {args.steps} steps")
    print(f"{'':45s} {'median s':>9s} {'ratio':>6s} {'compile s':>10s}")
    for r in rows:
        print(
            f"{r['name']:45s} {r['median_s']:9.3f} {r['ratio_to_reference']:6.2f} "
            f"{r['compile_and_first_s'] - r['median_s']:10.2f}"
        )
    out = pathlib.Path(__file__).parent / "results" / env["platform"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "brownian_path.json").write_text(
        json.dumps({"environment": env, "config": vars(args), "results": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
