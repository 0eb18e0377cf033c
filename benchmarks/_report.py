"""The Markdown summary and the PNG figures of `run.py`, from its JSON record alone."""

import math

import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _f(x, fmt="{:.3g}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return fmt.format(x)


def _batch(b: int) -> str:
    e = math.log10(b)
    return f"10^{e:.0f}" if b >= 1000 and abs(e - round(e)) < 1e-9 else str(b)


# ------------------------------------------------------------------------------------------
# Markdown


def summary_markdown(res: dict) -> str:
    env = res["environment"]
    out = [
        f"# scoresde benchmarks ({res['mode']} run)",
        "",
        f"- device: {env['device']} (platform `{env['platform']}`, {env['num_devices']} "
        f"device(s), {env.get('cpu_count')} CPU cores)",
        f"- JAX {env['jax']}, Python {env.get('python')}, date {env['date']}",
        f"- load average at start / end: {env.get('load_average')} / "
        f"{res.get('load_average_end')} (timings on a busy machine are distorted)",
        f"- total wall time: {res['wall_s']:.0f} s"
        + (
            f" (the sum of {len(res['merged_from'])} runs of `--parts`, merged with `--merge`)"
            if res.get("merged_from")
            else ""
        ),
        *(f"- replaced by a later run: {r}" for r in res.get("replaced", [])),
        "- every time is the median of warm runs after a first (compiling) call, with "
        "`block_until_ready`; compile s = first call - median.",
        "",
        "## Targets (reported, not asserted)",
        "",
        "| target | case | ratio | limit | status |",
        "|---|---|---|---|---|",
    ]
    for t in res["targets"]:
        status = "met" if t["met"] else "**missed**"
        if not t["applies"]:
            status += f" (indicative: {t['note']})"
        out.append(
            f"| {t['target']} | {t['case']} | {t['ratio']:.2f}× | {t['limit']:.2f}× | {status} |"
        )
    out += ["", "## References", ""]
    for name, st in res["references"].items():
        ver = f" {st['version']}" if st.get("version") else ""
        out.append(f"- {name}{ver}: {st['status']}")
    for part, title in (("mlp", "3×256 MLP, 2-D data"), ("unet", "small U-Net, 28×28 images")):
        sec = res.get("sampling", {}).get(part)
        if not sec or not sec["rows"]:
            continue
        cfg = sec["config"]
        out += [
            "",
            f"## Sampling throughput: {title}",
            "",
            f"Data shape {tuple(cfg['data_shape'])}, {cfg['num_steps']} steps for the fixed-step "
            "samplers (Heun: 2 evaluations per step; PredictorCorrector: half the steps, 2 "
            "evaluations each; AnnealedLangevin: 2 steps per level), VP SDE. Ratios are to the "
            "`lax.scan` loop at the same batch: wall time, and time per score evaluation.",
            "",
            "| batch | sampler | evals (mean/max) | median s | samples/s | µs/eval/sample "
            "| time ratio | per-eval ratio | compile s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sec["rows"]:
            if "error" in r:
                out.append(
                    f"| {_batch(r['batch'])} | {r['name']} | error: "
                    f"{r['error'].splitlines()[0][:80]} | | | | | | |"
                )
                continue
            out.append(
                f"| {_batch(r['batch'])} | {r['name']} | {r['score_evals_mean']:.0f}/"
                f"{r['score_evals_max']:.0f} | {_f(r['median_s'], '{:.4g}')} | "
                f"{_f(r['samples_per_s'], '{:.3g}')} | {_f(r['us_per_score_eval'], '{:.3g}')} | "
                f"{_f(r.get('time_ratio_to_scan'), '{:.2f}')} | "
                f"{_f(r.get('per_eval_ratio_to_scan'), '{:.2f}')} | "
                f"{_f(r['compile_s'], '{:.2f}')} |"
            )
        unrolled = [
            r
            for r in sec["rows"]
            if r["name"].startswith("lax.scan") and r.get("time_ratio_to_unrolled")
        ]
        if unrolled:
            out += [
                "",
                "The `lax.scan` loop against the same Euler–Maruyama steps unrolled in one "
                "jitted program: "
                + ", ".join(
                    f"{r['time_ratio_to_unrolled']:.1f}× at batch {_batch(r['batch'])}"
                    for r in unrolled
                )
                + " (XLA:CPU runs a convolution inside a loop body fast only with an NHWC "
                "input and an HWIO kernel, jax-ml/jax#12868, which is how the U-Net "
                "computes; `benchmarks/conv_loops.py`).",
            ]
    mlp_rows = res.get("sampling", {}).get("mlp", {}).get("rows", [])
    tree = [r for r in mlp_rows if "time_ratio_to_grid" in r]
    if tree:
        out += [
            "",
            "Virtual Brownian tree against the default grid path (same solver, steps): "
            + ", ".join(
                f"{_f(r['time_ratio_to_grid'], '{:.2f}')}× at batch {_batch(r['batch'])}"
                for r in tree
            )
            + ".",
        ]
    q = res.get("quality", {})
    for part, title in (
        ("mixture", "exact-score Gaussian mixture"),
        ("swiss_roll", "trained swiss roll"),
    ):
        sec = q.get(part)
        if not sec:
            continue
        fl = sec["floor"]
        out += [
            "",
            f"## Quality per cost: {title}",
            "",
            f"{sec['target']}; {q['config']['num']} samples per point against a reference "
            f"sample of the same size. Noise floor (energy distance of {fl['num_draws']} "
            f"independent exact draws to the reference): {fl['energy_mean']:.2e} ± "
            f"{fl['energy_sd']:.2e} (threshold {fl['energy_threshold']:.2e}). Rule: "
            f"{fl['rule']}.",
        ]
        if "train_seconds" in sec:
            out.append(
                f"Model trained for {sec['train_steps']} steps in {sec['train_seconds']:.0f} s."
            )
        out += [
            "",
            "| sampler | grid | evals to reach floor | energy distance at largest budget "
            "| sliced W2 there |",
            "|---|---|---|---|---|",
        ]
        for c in sec["curves"]:
            ok = [p for p in c["points"] if p.get("energy") is not None]
            bad = sum(1 for p in c["points"] if p.get("energy") is None)
            last = max(ok, key=lambda p: p["score_evals_mean"]) if ok else {}
            reach = c["evals_to_floor"]
            out.append(
                f"| {c['sampler']} | {c['grid']} | "
                f"{'not reached' if reach is None else f'{reach:.0f}'} | "
                f"{_f(last.get('energy'), '{:.2e}')} "
                f"({_f(last.get('score_evals_mean'), '{:.0f}')} evals) | "
                f"{_f(last.get('sliced_w2'), '{:.3f}')}"
                + (f" ({bad} point(s) diverged or failed)" if bad else "")
                + " |"
            )
    tr = res.get("training")
    if tr:
        cfg = tr["config"]
        out += [
            "",
            "## Training throughput",
            "",
            f"{cfg['steps']} steps, batch {cfg['batch']}, DSM on the VP SDE, Adam(1e-3), "
            "the SGM-from-scratch tutorial's MLP on the swiss roll. Ratio: time over the "
            "plain `jax.jit` loop's.",
            "",
            "| case | steps/s | ratio | compile s |",
            "|---|---|---|---|",
        ]
        for r in tr["rows"]:
            out.append(
                f"| {r['case']} | {r['steps_per_s']:.0f} | {r['ratio_to_reference']:.2f} | "
                f"{_f(r['compile_s'], '{:.2f}')} |"
            )
    if res.get("figures"):
        out += ["", "## Figures", ""] + [f"![{f}]({f})" for f in res["figures"]]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------
# Figures


def plot_throughput(res: dict, path) -> bool:
    if "mlp" not in res["sampling"]:
        return False
    rows = [r for r in res["sampling"]["mlp"]["rows"] if "error" not in r]
    names = list(dict.fromkeys(r["name"] for r in rows))
    if not rows:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    cmap = plt.get_cmap("tab20")
    markers = "os^vD<>ph*"
    for i, name in enumerate(names):
        rs = sorted((r for r in rows if r["name"] == name), key=lambda r: r["batch"])
        kw = dict(
            ls="--" if rs[0]["kind"] == "reference" else "-",
            marker=markers[i % len(markers)],
            color=cmap(i % 20),
            label=name,
        )
        b = [r["batch"] for r in rs]
        axes[0].plot(b, [r["samples_per_s"] for r in rs], **kw)
        axes[1].plot(b, [1e3 * r["us_per_score_eval"] for r in rs], **kw)
    axes[0].set_ylabel("samples / s")
    axes[1].set_ylabel("ns per score evaluation per sample")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    cfg = res["sampling"]["mlp"]["config"]
    fig.suptitle(
        f"Sampling throughput, 3×256 MLP, {cfg['num_steps']} steps — "
        f"{res['environment']['device']}, JAX {res['environment']['jax']}"
    )
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_quality(sec: dict, title: str, path) -> bool:
    fl = sec["floor"]
    curves = [c for c in sec["curves"] if any(p.get("energy") is not None for p in c["points"])]
    if not curves:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(16, 5.5))
    samplers = list(dict.fromkeys(c["sampler"] for c in curves))
    colours = {s: f"C{i}" for i, s in enumerate(samplers)}
    styles = {"uniform": "-", "edm": "--", "logsnr": ":", "-": "-", "adaptive": "-."}
    for c in curves:
        pts = sorted(
            (p for p in c["points"] if p.get("energy") is not None),
            key=lambda p: p["score_evals_mean"],
        )
        x = [p["score_evals_mean"] for p in pts]
        label = c["sampler"] + ("" if c["grid"] in ("-", "adaptive") else f" [{c['grid']}]")
        kw = dict(color=colours[c["sampler"]], ls=styles.get(c["grid"], "-"), marker="o", ms=3)
        axes[0].plot(x, [p["energy"] for p in pts], label=label, **kw)
        axes[1].plot(x, [p["sliced_w2"] for p in pts], label=label, **kw)
    for ax, key in ((axes[0], "energy"), (axes[1], "sliced_w2")):
        m, s = fl[f"{key}_mean"], fl[f"{key}_sd"]
        ax.axhspan(m - 2 * s, m + 2 * s, color="grey", alpha=0.25, label="floor (mean ± 2 SD)")
        ax.axhline(m, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("score evaluations per sample (mean)")
        ax.grid(True, which="both", alpha=0.3)
    lin = max(abs(fl["energy_mean"]) + 2 * fl["energy_sd"], 1e-5)
    axes[0].set_yscale("symlog", linthresh=lin)
    axes[0].set_ylabel("energy distance to reference")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("sliced Wasserstein-2 to reference")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


__all__ = ["plot_quality", "plot_throughput", "summary_markdown"]
