"""How wrong each posterior sampler is, against exact posteriors of Gaussian mixtures.

    python benchmarks/posterior.py [--quick] [--dims 2,8,32] [--problems 3] [--n 1000]
        [--steps 200] [--tds-steps 100] [--particles 1,4,16,64] [--out DIR]

The Gaussian-mixture experiment of TMPD (Boys et al., 2024), itself Cardoso et al.'s
(2024, MCGdiff): a prior of 25 unit-covariance components with equal weights and means
$8\\,(i, j, i, j, \\dots) \\in \\mathbb R^d$ for $(i, j) \\in \\{-2, \\dots, 2\\}^2$, on
the VP SDE (beta 0.1 to 20). Observations $y = A x_0 + \\sigma_y \\varepsilon$ of one prior
draw $x_0$, with $A = U\\,\\mathrm{diag}(s)\\,V$ of shape $(d_y, d)$: $U$ a random
$d_y \\times d_y$ orthogonal matrix, $V$ the first $d_y$ rows of a random $d \\times d$
orthogonal matrix, $s$ sorted uniform on $[0, 1]$. $d_y = 1, 2, 4$ for $d = 2, 8, 32$
(`d_y = log2(d) - 1`, at least 1); problem $p$ of a dimension has $\\sigma_y = 0.5$ for even $p$
and $1.0$ for odd $p$. A draw is kept only if its exact posterior is multimodal (at least
two posterior weights above 0.1); seeds are tried in order 0, 1, 2, ... per dimension (each
problem starts after the previous one's seed) and the skipped ones are recorded.

For each problem the exact posterior (`prior.posterior(obs, y)`, a Gaussian mixture) gives
a reference sample of `--n` draws, and every method draws `--n` samples for the same $y$:

- `exact (Monte Carlo floor)`: a second, independent exact sample; its errors are what a
  perfect sampler scores with `--n` samples;
- `DPS`, `PiGDM`, `TMPD`: guided scores, `ReverseSDE` (Euler-Maruyama, `--steps` steps);
- `TDS K=...`: `TwistedDiffusionSampler` (TMPD twist) with `--particles` particles per
  sample and `--tds-steps` steps.

Metrics per method and problem: the largest error of the posterior mode weights,
$\\max_k |\\frac1n\\sum_i r_k(x_i) - w_k|$ with $r_k$ the exact posterior's
responsibilities at $t = 0$ and $w_k$ its weights; the sliced Wasserstein-2 distance to
the reference sample (128 projections, the same directions for every method of a
problem); the mean score evaluations per sample (`stats["num_score_evals"]`; a guided
evaluation also does one vector-Jacobian product, TMPD and the TMPD twist $d_y$ more); the
wall time of the call; for TDS the mean minimum effective sample size and the mean error
of its $\\log p(y)$ estimate against the exact evidence. Samples that are not finite are
counted and left out of the metrics.

Timing: every call is ended by `block_until_ready`. A method compiles once per dimension
(new problems of the same shapes reuse the program), so its first call, on the first
problem, includes compilation: `compile_s` is that call's time minus the median of the
later (warm) calls, and `median_s` is that median (so `--problems` must be at least 2 for
a warm time). Every `sample()` call runs in blocks (`chunk_size`, the largest divisor of
`--n`) of at most `--block` particles, samples x K (default 256; 0 for one block): on this
CPU a TDS run of 1024-2048 particles in one block was 2-3x slower per particle-step than
in blocks of 64-128 (the mixture score's per-component intermediates then fall out of the
cache).

Writes `posterior.json`, `posterior.png` and `posterior_summary.md` to
benchmarks/results/<platform>/ (`--quick`: .../quick/; `--out DIR`). `--report JSON`
only redraws the summary and the plot from a record.
"""

import argparse
import json
import pathlib
import statistics
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _common import environment, load_average

import scoresde as sd


GRID = np.array([(i, j) for i in range(-2, 3) for j in range(-2, 3)], dtype=float)
SPACING = 8.0
MIN_MODES, MODE_WEIGHT = 2, 0.1
FLOOR = "exact (Monte Carlo floor)"


def observation_dim(d: int) -> int:
    """d_y = 1, 2, 4 for d = 2, 8, 32 (log2(d) - 1, at least 1)."""
    return max(1, int(np.log2(d)) - 1)


def block_size(n: int, per_sample: int, budget: int) -> int | None:
    """The largest divisor of `n` with at most `budget` particles (`per_sample` each) in a
    block, for `sample(..., chunk_size=)`; None (one block) when all of them fit."""
    if budget <= 0 or n * per_sample <= budget:
        return None
    cap = max(1, budget // per_sample)
    return max(c for c in range(1, cap + 1) if n % c == 0)


def make_prior(sde, d: int) -> sd.GaussianMixtureScore:
    k = GRID.shape[0]
    means = SPACING * np.tile(GRID, (1, d // 2))
    covariances = np.broadcast_to(np.eye(d), (k, d, d)).copy()
    return sd.GaussianMixtureScore(
        sde, weights=np.full(k, 1.0 / k), means=means, covariances=covariances
    )


def make_operator(d: int, dy: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([d, seed])
    u = np.linalg.qr(rng.standard_normal((dy, dy)))[0]
    v = np.linalg.qr(rng.standard_normal((d, d)))[0][:dy]
    s = np.sort(rng.uniform(0.0, 1.0, dy))[::-1]
    return u @ np.diag(s) @ v


def log_evidence(prior, A: np.ndarray, noise_std: float, y: np.ndarray) -> float:
    """Exact $\\log p(y)$ for the mixture prior (float64, NumPy)."""
    w, mu, cov = (
        np.asarray(a, dtype=np.float64) for a in (prior.weights, prior.means, prior.covariances)
    )
    A = np.asarray(A, np.float64)
    S = np.einsum("ij,kjl,ml->kim", A, cov, A) + noise_std**2 * np.eye(A.shape[0])
    r = np.asarray(y, np.float64) - mu @ A.T
    _, logdet = np.linalg.slogdet(S)
    quad = np.einsum("ki,ki->k", r, np.linalg.solve(S, r[..., None])[..., 0])
    log_joint = np.log(w) - 0.5 * (quad + logdet + A.shape[0] * np.log(2 * np.pi))
    top = log_joint.max()
    return float(top + np.log(np.exp(log_joint - top).sum()))


def make_problems(sde, d: int, num: int, noises: list[float]) -> list[dict]:
    """The first `num` multimodal problems of dimension `d` (noise level alternating)."""
    prior = make_prior(sde, d)
    dy = observation_dim(d)
    problems, next_seed = [], 0
    for p in range(num):
        noise = noises[p % len(noises)]
        skipped = []
        for seed in range(next_seed, next_seed + 200):
            A = make_operator(d, dy, seed)
            obs = sd.LinearObservation(A, noise_std=noise)
            key_x, key_y = jr.split(jr.fold_in(jr.key(d), seed))
            x0 = prior.sample(key_x, 1)[0]
            y = obs.sample(key_y, x0)
            post = prior.posterior(obs, y)
            weights = np.asarray(post.weights)
            if (weights > MODE_WEIGHT).sum() >= MIN_MODES:
                break
            skipped.append(seed)
        else:
            raise RuntimeError(f"no multimodal posterior in 200 draws for d={d}, sigma={noise}")
        next_seed = seed + 1
        problems.append(
            {
                "d": d,
                "dy": dy,
                "noise_std": noise,
                "seed": seed,
                "skipped_seeds": skipped,
                "prior": prior,
                "obs": obs,
                "A": A,
                "y": y,
                "post": post,
                "log_evidence": log_evidence(prior, A, noise, np.asarray(y)),
                "posterior_weights_above_0.1": sorted(
                    (round(float(w), 4) for w in weights if w > MODE_WEIGHT), reverse=True
                ),
            }
        )
    return problems


def method_calls(sde, problem: dict, args) -> dict:
    """name -> (key -> SampleResult) for one problem (new closures, same compiled programs)."""
    prior, obs, post = problem["prior"], problem["obs"], problem["post"]
    n, d = args.n, problem["d"]
    Y = jnp.broadcast_to(problem["y"], (n,) + problem["y"].shape)
    calls = {FLOOR: lambda key: post.sample(key, n)}
    euler = sd.ReverseSDE(num_steps=args.steps)
    chunk = block_size(n, 1, args.block)
    for guide in (sd.DPS, sd.PiGDM, sd.TMPD):
        score = guide(sde, prior, obs)
        calls[guide.__name__] = lambda key, score=score: sd.sample(
            sde, score, euler, (n, d), key=key, condition=Y, return_info=True, chunk_size=chunk
        )
    for k in args.particles:
        tds = sd.TwistedDiffusionSampler(obs, num_particles=k, num_steps=args.tds_steps)
        chunk_k = block_size(n, k, args.block)
        calls[f"TDS K={k}"] = lambda key, tds=tds, chunk_k=chunk_k: sd.sample(
            sde, prior, tds, (n, d), key=key, condition=Y, return_info=True, chunk_size=chunk_k
        )
    return calls


@eqx.filter_jit
def mode_weight_error(post, x):
    resp = jax.vmap(lambda xi: post.responsibilities(0.0, xi))(x)
    return jnp.max(jnp.abs(jnp.mean(resp, axis=0) - post.weights))


def evaluate(problem: dict, x, reference, key) -> dict:
    x = np.asarray(x)
    finite = np.all(np.isfinite(x), axis=1)
    out = {"num_nonfinite": int((~finite).sum())}
    if finite.sum() < 2:
        out.update(weight_error=float("nan"), sliced_w2=float("nan"))
        return out
    x = jnp.asarray(x[finite])
    out["weight_error"] = float(mode_weight_error(problem["post"], x))
    out["sliced_w2"] = float(sd.metrics.sliced_wasserstein(x, reference, key=key))
    return out


def run_dimension(sde, d: int, args, log) -> tuple[list[dict], dict]:
    load_start, t_start = load_average(), time.perf_counter()
    problems = make_problems(sde, d, args.problems, args.noise)
    rows, times = [], {}
    for p, problem in enumerate(problems):
        log(
            f"d={d} problem {p}: sigma_y={problem['noise_std']} seed={problem['seed']} "
            f"(skipped {problem['skipped_seeds']}), weights > 0.1: "
            f"{problem['posterior_weights_above_0.1']}"
        )
        base = jr.fold_in(jr.key(2024), 1000 * d + p)
        reference = problem["post"].sample(jr.fold_in(base, 0), args.n)
        sw_key = jr.fold_in(base, 1)
        for name, call in method_calls(sde, problem, args).items():
            t0 = time.perf_counter()
            out = jax.block_until_ready(call(jr.fold_in(base, 2 + len(rows))))
            elapsed = time.perf_counter() - t0
            times.setdefault(name, []).append(elapsed)
            samples = out if name == FLOOR else out.samples
            row = {
                "d": d,
                "problem": p,
                "method": name,
                "seconds": elapsed,
                **evaluate(problem, samples, reference, sw_key),
            }
            if name == FLOOR:
                row["score_evals"] = 0.0
            else:
                row["score_evals"] = float(jnp.mean(out.stats["num_score_evals"]))
            if name.startswith("TDS"):
                row["min_ess"] = float(jnp.mean(out.stats["min_ess"]))
                row["log_evidence_error"] = float(
                    jnp.mean(out.stats["log_normaliser"]) - problem["log_evidence"]
                )
            rows.append(row)
            extra = f" min-ESS {row['min_ess']:.1f}" if "min_ess" in row else ""
            log(
                f"  {name:26s} {elapsed:7.2f} s  weight err {row['weight_error']:.3f}  "
                f"SW {row['sliced_w2']:.3f}  evals {row['score_evals']:.0f}{extra}"
                + (f"  non-finite {row['num_nonfinite']}" if row["num_nonfinite"] else "")
            )
    timing = {}
    for name, ts in times.items():
        warm = ts[1:]
        median = statistics.median(warm) if warm else None
        timing[name] = {
            "first_s": ts[0],
            "median_s": median,
            "compile_s": max(ts[0] - median, 0.0) if median is not None else None,
            "runs_s": ts,
        }
    for problem in problems:
        for key in ("prior", "obs", "post"):
            problem.pop(key)
        problem["A"] = np.asarray(problem["A"]).tolist()
        problem["y"] = np.asarray(problem["y"]).tolist()
    info = {
        "problems": problems,
        "timing": timing,
        "wall_s": time.perf_counter() - t_start,
        "load_average_start": load_start,
        "load_average_end": load_average(),
    }
    return rows, info


def summarise(rows: list[dict], dims: list[int]) -> dict:
    """method -> d -> means over problems."""
    out = {}
    for row in rows:
        out.setdefault(row["method"], {}).setdefault(row["d"], []).append(row)
    summary = {}
    for method, by_d in out.items():
        summary[method] = {}
        for d in dims:
            rs = by_d.get(d, [])
            if not rs:
                continue
            entry = {
                key: float(np.mean([r[key] for r in rs]))
                for key in ("weight_error", "sliced_w2", "score_evals")
            }
            entry["weight_error_range"] = [
                float(min(r["weight_error"] for r in rs)),
                float(max(r["weight_error"] for r in rs)),
            ]
            entry["num_nonfinite"] = int(sum(r["num_nonfinite"] for r in rs))
            for key in ("min_ess", "log_evidence_error"):
                if key in rs[0]:
                    entry[key] = float(np.mean([r[key] for r in rs]))
            summary[method][d] = entry
    return summary


def fmt(v, spec=".3f"):
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def markdown(result: dict) -> str:
    dims, summary, cfg = result["dims"], result["summary"], result["config"]
    env = result["environment"]
    t = {d: result["per_dimension"][str(d)]["timing"] for d in dims}
    lines = [
        "# Posterior sampling against exact posteriors",
        "",
        f"`{result['command']}`: {env['date']}, {env['device']}, {env['cpu_count']} cores, "
        f"JAX {env['jax']}, load average {env['load_average']} at the start and "
        f"{result['load_average_end']} at the end; {result['wall_s'] / 60:.1f} min in all.",
        "",
        f"Gaussian-mixture priors (25 unit-covariance components, means 8(i, j, i, j, ...)),"
        f" random A of shape (d_y, d) with d_y = {', '.join(str(observation_dim(d)) for d in dims)}"
        f" for d = {', '.join(map(str, dims))}, sigma_y alternating {cfg['noise']};"
        f" {cfg['problems']} multimodal problems per dimension, n = {cfg['n']} samples per"
        f" method. Guidance: ReverseSDE Euler, {cfg['steps']} steps. TDS: TMPD twist,"
        f" {cfg['tds_steps']} steps. Means over problems; the weight error is"
        " max_k |mean responsibility - exact weight|, SW the sliced Wasserstein-2 distance"
        " to an exact sample; time is the median warm wall time of one call"
        " (n samples), compile reported apart.",
        "",
        "Wall time and 1-minute load average per dimension: "
        + "; ".join(
            f"d={d} {result['per_dimension'][str(d)]['wall_s']:.0f} s (load "
            f"{result['per_dimension'][str(d)]['load_average_start'][0]} to "
            f"{result['per_dimension'][str(d)]['load_average_end'][0]})"
            for d in dims
        )
        + ". With a load above the core count the times are inflated, unevenly.",
        "",
    ]
    head = (
        ["method", "score evals / sample"]
        + [f"weight err d={d}" for d in dims]
        + [f"SW d={d}" for d in dims]
        + [f"time s d={d}" for d in dims]
        + ["compile s " + "/".join(f"d={d}" for d in dims)]
    )
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, by_d in summary.items():
        evals = sorted({round(by_d[d]["score_evals"]) for d in dims if d in by_d})
        cells = [method, "/".join(str(e) for e in evals)]
        cells += [fmt(by_d[d]["weight_error"]) if d in by_d else "—" for d in dims]
        cells += [fmt(by_d[d]["sliced_w2"]) if d in by_d else "—" for d in dims]
        cells += [fmt(t[d][method]["median_s"], ".2f") for d in dims]
        cells += ["/".join(fmt(t[d][method]["compile_s"], ".1f") for d in dims)]
        lines.append("| " + " | ".join(cells) + " |")
    tds = [m for m in summary if m.startswith("TDS")]
    if tds:
        head = (
            ["method"] + [f"min-ESS d={d}" for d in dims] + [f"log p(y) error d={d}" for d in dims]
        )
        lines += [
            "",
            "TDS diagnostics (means over samples and problems): the smallest effective sample"
            " size over the run, and the mean error of the per-sample log p(y) estimate"
            " against the exact evidence.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for m in tds:
            cells = [m] + [fmt(summary[m][d].get("min_ess"), ".1f") for d in dims]
            cells += [fmt(summary[m][d].get("log_evidence_error"), "+.2f") for d in dims]
            lines.append("| " + " | ".join(cells) + " |")
    bad = {m: sum(e["num_nonfinite"] for e in by_d.values()) for m, by_d in summary.items()}
    bad = {m: v for m, v in bad.items() if v}
    if bad:
        lines += ["", f"Non-finite samples (left out of the metrics): {bad}."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims, rows = result["dims"], result["rows"]
    methods = list(result["summary"])
    markers = dict(zip(methods, "*os^DvP<>hX", strict=False))
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    # The guided samplers share one evaluation count: spread them a little to see them.
    nudge = {"DPS": 0.9, "PiGDM": 1.0, "TMPD": 1.1}
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims) + 1.6, 3.8), squeeze=False)
    for ax, d in zip(axes[0], dims, strict=True):
        floor = [r["weight_error"] for r in rows if r["d"] == d and r["method"] == FLOOR]
        if floor:
            ax.axhspan(min(floor), max(floor), color="0.85", label="exact: range")
            ax.axhline(np.mean(floor), color="0.4", ls="--", lw=1, label="exact: mean")
        for m in methods:
            if m == FLOOR:
                continue
            rs = [r for r in rows if r["d"] == d and r["method"] == m]
            if not rs:
                continue
            x = np.mean([r["score_evals"] for r in rs]) * nudge.get(m, 1.0)
            errs = [r["weight_error"] for r in rs]
            ax.scatter([x] * len(errs), errs, marker=markers[m], s=14, alpha=0.35, color=colors[m])
            ax.scatter(
                [x],
                [np.mean(errs)],
                marker=markers[m],
                s=60,
                label=m,
                color=colors[m],
                edgecolor="k",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("score evaluations per sample")
        ax.set_title(f"d = {d}, d_y = {observation_dim(d)}")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("mode-weight error (max |w_hat - w|)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(
        "Posterior samplers against exact posteriors (large markers: mean over problems; "
        "guided samplers nudged apart in x)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--dims", default=None, help="comma-separated (default 2,8,32)")
    parser.add_argument("--problems", type=int, default=None, help="per dimension (3)")
    parser.add_argument("--n", type=int, default=None, help="samples per method (1000)")
    parser.add_argument("--steps", type=int, default=None, help="guidance steps (200)")
    parser.add_argument("--tds-steps", type=int, default=None, help="TDS steps (100)")
    parser.add_argument("--particles", default=None, help="TDS particles (1,4,16,64)")
    parser.add_argument("--noise", default="0.5,1.0", help="sigma_y levels, alternating")
    parser.add_argument(
        "--block",
        type=int,
        default=256,
        help="at most this many particles (samples x K) per sample() block; 0: one block",
    )
    parser.add_argument("--out", default=None, help="output folder")
    parser.add_argument(
        "--report",
        default=None,
        metavar="JSON",
        help="only redraw the summary and plot from a posterior.json (next to it)",
    )
    args = parser.parse_args()
    if args.report:
        path = pathlib.Path(args.report)
        result = json.loads(path.read_text())
        result["summary"] = {
            m: {int(d): v for d, v in by_d.items()} for m, by_d in result["summary"].items()
        }
        (path.parent / "posterior_summary.md").write_text(markdown(result))
        plot(result, path.parent / "posterior.png")
        print(markdown(result))
        return
    defaults = (
        dict(dims="2,8", problems=2, n=200, steps=20, tds_steps=10, particles="1,4")
        if args.quick
        else dict(
            dims="2,8,32", problems=3, n=1000, steps=200, tds_steps=100, particles="1,4,16,64"
        )
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.dims = [int(v) for v in args.dims.split(",")]
    args.particles = [int(v) for v in args.particles.split(",")]
    args.noise = [float(v) for v in args.noise.split(",")]

    start = time.perf_counter()
    env = environment()

    def log(msg):
        print(f"[{time.perf_counter() - start:6.1f} s] {msg}", flush=True)

    sde = sd.VPSDE(0.1, 20.0)
    rows, per_dim = [], {}
    for d in args.dims:
        r, info = run_dimension(sde, d, args, log)
        rows += r
        per_dim[str(d)] = info
    result = {
        "environment": env,
        "load_average_end": load_average(),
        "command": "python benchmarks/posterior.py " + " ".join(sys.argv[1:]),
        "wall_s": time.perf_counter() - start,
        "config": {
            "dims": args.dims,
            "observation_dims": [observation_dim(d) for d in args.dims],
            "problems": args.problems,
            "n": args.n,
            "steps": args.steps,
            "tds_steps": args.tds_steps,
            "particles": args.particles,
            "noise": args.noise,
            "block_particles": args.block,
            "chunk_size": {
                "guidance": block_size(args.n, 1, args.block),
                **{f"TDS K={k}": block_size(args.n, k, args.block) for k in args.particles},
            },
            "sde": "VPSDE(0.1, 20.0)",
            "prior": "25 components, weights 1/25, covariances I, means 8 (i, j, i, j, ...)",
            "operator": "U diag(s) V: U (dy, dy) and V (dy rows of d x d) random orthogonal, "
            "s sorted uniform [0, 1]",
            "multimodal": f">= {MIN_MODES} exact posterior weights above {MODE_WEIGHT}",
            "sliced_wasserstein": "p=2, 128 projections, against n exact posterior samples",
        },
        "dims": args.dims,
        "summary": None,
        "per_dimension": per_dim,
        "rows": rows,
    }
    result["summary"] = summarise(rows, args.dims)
    out = (
        pathlib.Path(args.out)
        if args.out
        else pathlib.Path(__file__).parent
        / "results"
        / jax.default_backend()
        / ("quick" if args.quick else "")
    )
    out.mkdir(parents=True, exist_ok=True)
    json_summary = {
        m: {str(d): v for d, v in by_d.items()} for m, by_d in result["summary"].items()
    }
    (out / "posterior.json").write_text(json.dumps({**result, "summary": json_summary}, indent=2))
    (out / "posterior_summary.md").write_text(markdown(result))
    plot(result, out / "posterior.png")
    print(markdown(result))
    log(f"wrote {out}/posterior.json, posterior_summary.md, posterior.png")


if __name__ == "__main__":
    main()
