"""Fixed-step reverse-SDE sampling: the library (grid path and VirtualBrownianTree) against a
hand-written `lax.scan` Euler–Maruyama loop with the same 3x256 MLP score and step count.

    python benchmarks/brownian_path.py [--batch 10000] [--steps 200] [--repeats 5]

Prints a table and writes JSON to benchmarks/results/<platform>/brownian_path.json.
"""

import argparse
import json
import pathlib

import diffrax as dfx
import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
from _common import environment, time_call

import scoresde as sd


def reference_loop(sde, net, num, steps, key):
    """What a user writes by hand (seed 000): one batched network call per step."""
    ts = jnp.linspace(sde.T, sde.default_eps, steps + 1)
    key_x, key_w = jr.split(key)
    x = jr.normal(key_x, (num, 2))
    batched = jax.vmap(net, in_axes=(None, 0))

    def body(x, i):
        t, dt = ts[i], ts[i + 1] - ts[i]
        drift = -0.5 * sde.beta(t) * x - sde.beta(t) * batched(t, x)
        noise = jr.normal(jr.fold_in(key_w, i), x.shape)
        return x + drift * dt + jnp.sqrt(sde.beta(t) * -dt) * noise, None

    x, _ = lax.scan(body, x, jnp.arange(steps))
    return x


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

    ref = eqx.filter_jit(lambda k: reference_loop(sde, net, args.batch, args.steps, k))
    runs = {"lax.scan reference": ref}
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
