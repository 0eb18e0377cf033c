"""What each subcommand does; imports the heavy parts only when one runs."""

import json
import math
import pathlib
import warnings

import diffrax as dfx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .. import metrics, plotting
from .._guidance import ClassifierFreeGuidance
from .._likelihood import log_prob
from .._sampler import (
    AnnealedLangevin,
    Langevin,
    PredictorCorrector,
    ProbabilityFlowODE,
    ReverseSDE,
    sample as sample_fn,
)
from .._train import CheckpointError, fit, init_state, load_checkpoint, read_metadata
from ._config import (
    build_model,
    build_objective,
    build_optimizer,
    build_sde,
    check_against_checkpoint,
    check_config_file,
    check_value,
    CHECKPOINT,
    CLIError,
    conditional,
    CONFIG,
    defining,
    FORMAT,
    load_data,
    load_labels,
    ncsn_eps,
    read_config,
    read_run,
    time_free,
    TRAIN_OPTIONS,
    training_data,
    training_labels,
    write_config,
)


def _merged_config(args, defaults: dict) -> dict:
    """Defaults < the --config file < options given on the command line, each value
    checked against TRAIN_OPTIONS where it was given."""
    config = dict(defaults)
    given = {}
    if args.config:
        path = pathlib.Path(args.config)
        if not path.is_file():
            raise CLIError(f"no config file at {path}")
        given = read_config(path)
        check_config_file(path, given, TRAIN_OPTIONS)
        if given.get("data") is not None and given.get("dataset") is not None:
            raise CLIError(f"{path}: give data (a file) or dataset (a built-in one), not both")
        config.update(given)
    for name in defaults:
        value = getattr(args, name, None)
        if value is not None:
            check_value("", "--" + name.replace("_", "-"), value, TRAIN_OPTIONS[name])
            config[name] = value
    if args.data or (given.get("data") and not args.dataset):
        config["dataset"] = None
    elif args.dataset:
        config["data"] = None
    if config["labels"] is not None and not config["data"]:
        raise CLIError("--labels needs --data FILE (the built-in data sets are unlabelled)")
    return config


def _conditioning(config: dict, labels) -> None:
    """Checks and records `condition_dropout` (default 0.1 with labels)."""
    p = config.get("condition_dropout")
    if labels is None:
        if p is not None:
            raise CLIError(
                "--condition-dropout needs class labels (--labels FILE, or an .npz --data "
                "with a 'labels' array)"
            )
        return
    if time_free(config):
        raise CLIError(
            f"--labels: objective {config['objective']} trains a time-free model, which takes "
            "no labels; use --objective dsm or ncsn for a class-conditional run"
        )
    if p is None:
        p = 0.1
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise CLIError(f"--condition-dropout must lie in [0, 1), got {p!r}")
    config["condition_dropout"] = float(p)


def _make_folder(folder: pathlib.Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(
            f"{option}: cannot create the folder {folder} ({e.strerror or e}); choose another "
            f"{option}"
        ) from e


def _check_folder(folder: pathlib.Path, option: str, given=None) -> None:
    """That `folder` (for the path `given` to `option`) can be created: no part of its
    path is a file (checked before any work; nothing is created yet)."""
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise CLIError(
                    f"{option} {given or folder}: {part} is a file, not a folder; choose "
                    f"another {option}"
                )
            return


def _recorded_config(run: pathlib.Path, config: dict) -> None:
    """Refuses a config.toml edited since its checkpoint was written (another SDE, ...)."""
    try:
        meta = read_metadata(run / CHECKPOINT)
    except CheckpointError as e:
        raise CLIError(str(e)) from e
    check_against_checkpoint(run, config, meta.get("config"))


def _same_model(run: pathlib.Path, model) -> None:
    """For runs that record no config values (older versions): the model config.toml
    builds against the one the checkpoint records, with a hint that fits the CLI."""
    from .._train._checkpoint import read_header
    from .._train._recipe import describe, difference

    saved = read_header(run / CHECKPOINT)[0].get("model")
    if saved is None:
        return
    diff = difference(saved["recipe"], describe(model))
    if diff is not None:
        raise CLIError(
            f"{run / CONFIG} builds another model than {run / CHECKPOINT} holds ({diff}); "
            "restore config.toml as it was when training, or train a new run"
        )


def _load_state(run: pathlib.Path, config: dict):
    _recorded_config(run, config)
    sde = build_sde(config)
    model = build_model(config, sde)
    _same_model(run, model)
    template = init_state(model, build_optimizer(config), jr.key(config["seed"]))
    try:
        state, meta = load_checkpoint(run / CHECKPOINT, template)
    except CheckpointError as e:
        raise CLIError(str(e)) from e
    return sde, state, meta


# `train --resume` continues the run as its config.toml says; only these may be given.
RESUME_OPTIONS = ("steps", "out")


def train(args, defaults: dict) -> None:
    from .. import __version__

    run = pathlib.Path(args.out or defaults["out"])
    if args.resume:
        changed = [
            f"--{name.replace('_', '-')}"
            for name in defaults
            if name not in RESUME_OPTIONS and getattr(args, name, None) is not None
        ]
        if args.config:
            changed.insert(0, "--config")
        if changed:
            raise CLIError(
                f"--resume continues the run in {run} as its {CONFIG} says, so "
                f"{', '.join(changed)} cannot be given (only --steps); train a new run with "
                "another --out to change them"
            )
        config = read_run(str(run))
        _recorded_config(run, config)
        if args.steps is not None:
            check_value("", "--steps", args.steps, TRAIN_OPTIONS["steps"])
            config["steps"] = args.steps
        data = training_data(config)
        labels = training_labels(config, data)
    else:
        config = _merged_config(args, defaults)
        _check_folder(run, "--out")
        if (run / CHECKPOINT).exists():
            raise CLIError(f"{run} already holds a run; use --resume, or another --out")
        data = training_data(config)
        config["data_shape"] = list(data.shape[1:])
        if config["objective"] == "ncsn" and config["sde"] != "ve":
            raise CLIError("--objective ncsn needs --sde ve (NCSN's geometric noise ladder)")
        labels = training_labels(config, data)
        _conditioning(config, labels)
    if data.shape[0] < config["batch_size"]:
        raise CLIError(
            f"--batch-size {config['batch_size']} exceeds the {data.shape[0]} data points"
        )
    if list(data.shape[1:]) != list(config["data_shape"]):
        raise CLIError(f"data shape {data.shape[1:]} differs from the run's {config['data_shape']}")
    sde = build_sde(config, data)
    config.update(format=FORMAT, scoresde=__version__, out=str(run))
    _make_folder(run, "--out")
    write_config(run, config)
    if labels is not None:
        k = config["num_classes"]
        print(
            f"class-conditional: {k} classes from {config['labels']} (null label {k}, "
            f"condition dropout {config['condition_dropout']})"
        )
        conditioning = dict(
            condition=labels, condition_dropout=config["condition_dropout"], null_condition=k
        )
    else:
        conditioning = {}
    try:
        with warnings.catch_warnings(record=True) as caught:
            result = fit(
                build_model(config, sde),
                build_objective(config, sde),
                data,
                optimizer=build_optimizer(config),
                num_steps=config["steps"],
                batch_size=config["batch_size"],
                key=jr.key(config["seed"]),
                checkpoint=run / CHECKPOINT,
                checkpoint_every=config["checkpoint_every"],
                resume=args.resume,
                progress=not args.no_progress,
                metadata={"config": defining(config)},
                **conditioning,
            )
    except FloatingPointError as e:
        raise CLIError(_diverged(e, run, config, defaults["lr"])) from e
    _unsaved(caught, run)
    plotting.save(plotting.plot_loss(result.losses), run / "loss.png")
    print(f"trained to step {int(result.state.step)}; final loss {result.losses[-100:].mean():.4g}")
    print(f"wrote {run / CHECKPOINT}, {run / 'loss.png'}, {run / CONFIG}")


def _unsaved(caught: list, run: pathlib.Path) -> None:
    """Re-shows the warnings of `fit`, except that a checkpoint could not be saved (a full
    disk mid-run): that is an error here, one line, since the process ends with it."""
    unsaved = None
    for w in caught:
        if str(w.message).startswith("fit could not save"):
            unsaved = str(w.message)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if unsaved is not None:
        what = unsaved.removeprefix("fit ").split(". The returned result")[0]
        raise CLIError(
            f"training ran, but {what}; free space or fix the folder, then continue with "
            f"scoresde train --out {run} --resume"
        )


def _diverged(error: FloatingPointError, run: pathlib.Path, config: dict, default_lr) -> str:
    """The one line for a run whose loss became NaN or inf; it suggests a tenth of the
    run's learning rate, at most the default one."""
    if (run / CHECKPOINT).is_file():
        step = read_metadata(run / CHECKPOINT)["step"]
        kept = f"{run} keeps the checkpoint of step {step}: train again into another --out"
    else:
        kept = "train again"
    lower = min(config["lr"] / 10, default_lr)
    return (
        f"{str(error).rstrip('.')} (this run's lr is {config['lr']:g}); {kept} with a lower "
        f"--lr, e.g. --lr {lower:g}"
    )


def _sampler(name: str, solver: str, steps: int, step_size: float, config: dict, sde):
    if time_free(config) and name not in ("langevin", None):
        raise CLIError(
            f"this run's model is time-free (objective {config['objective']}): use "
            "--sampler langevin"
        )
    if name is None:
        name = "langevin" if time_free(config) else "reverse-sde"
    if name == "langevin":
        return Langevin(num_steps=steps, step_size=step_size)
    if name == "annealed-langevin":
        levels = config["num_levels"]
        return AnnealedLangevin(
            num_levels=levels,
            steps_per_level=max(steps // levels, 1),
            step_size=step_size * 1e-2,
            eps=ncsn_eps(config, sde),
        )
    if name == "pc":
        return PredictorCorrector(num_steps=steps)
    if name == "reverse-sde":
        if solver == "adaptive":
            return ReverseSDE(
                dfx.Heun(),
                stepsize_controller=dfx.PIDController(rtol=1e-2, atol=1e-2),
                brownian="tree",
            )
        return ReverseSDE(dfx.Euler() if solver == "euler" else dfx.Heun(), num_steps=steps)
    if solver == "adaptive":
        return ProbabilityFlowODE()
    return ProbabilityFlowODE(dfx.Euler() if solver == "euler" else dfx.Heun(), num_steps=steps)


def _figure(samples: np.ndarray, path: pathlib.Path) -> None:
    if samples.ndim == 4:
        plotting.save(plotting.plot_image_grid(samples[:64]), path)
    else:
        plotting.save(plotting.plot_scatter(samples[:, :2]), path)


def _draw(config, sde, score, sampler_name, solver, num, steps, step_size, seed, condition):
    sampler = _sampler(sampler_name, solver, steps, step_size, config, sde)
    shape = (num, *config["data_shape"])
    x = sample_fn(sde, score, sampler, shape, key=jr.key(seed), condition=condition)
    return np.asarray(x)


def _check_label_options(config: dict, label, guidance) -> None:
    """`sample`'s --label and --guidance against the run, before anything is loaded."""
    if not conditional(config):
        for option, value in (("--label", label), ("--guidance", guidance)):
            if value is not None:
                raise CLIError(
                    f"{option}: this run is unconditional (trained without --labels); "
                    "train with --labels FILE to sample classes"
                )
        return
    k = int(config["num_classes"])
    if guidance is not None:
        if not math.isfinite(guidance) or guidance < 0:
            raise CLIError(f"--guidance must be a finite number >= 0, got {guidance}")
        if label is None:
            raise CLIError(
                "--guidance needs --label C: it pushes samples towards class C and away from "
                "the unconditional model"
            )
    if label is not None and not 0 <= label < k:
        raise CLIError(f"--label must lie in [0, {k - 1}] (this run has {k} classes), got {label}")


def _score_and_condition(config: dict, model, label, guidance, num: int):
    """The score to sample and its condition for `num` samples: class `label` (guided with
    weight `guidance`), or the null label on a class-conditional run; the model itself and
    no condition on an unconditional one. Also a few words saying which."""
    _check_label_options(config, label, guidance)
    if not conditional(config):
        return model, None, ""
    k = int(config["num_classes"])
    if label is None:
        return model, jnp.full((num,), k, jnp.int32), " from the unconditional model (null label)"
    condition = jnp.full((num,), label, jnp.int32)
    if guidance:
        guided = ClassifierFreeGuidance(model, scale=float(guidance), null_condition=k)
        return guided, condition, f" of class {label} (guidance {guidance:g})"
    return model, condition, f" of class {label}"


def sample(args) -> None:
    run = pathlib.Path(args.run)
    config = read_run(args.run)
    if args.out:
        _check_folder(pathlib.Path(args.out).parent, "--out", args.out)
    _check_label_options(config, args.label, args.guidance)
    sde, state, _ = _load_state(run, config)
    score, condition, what = _score_and_condition(
        config, state.ema_model, args.label, args.guidance, args.num
    )
    x = _draw(
        config,
        sde,
        score,
        args.sampler,
        args.solver,
        args.num,
        args.steps,
        args.step_size,
        args.seed,
        condition,
    )
    out = pathlib.Path(args.out) if args.out else run / "samples.npy"
    _make_folder(out.parent, "--out")
    np.save(out, x)
    _figure(x, out.with_suffix(".png"))
    print(f"wrote {len(x)} samples{what} to {out} and {out.with_suffix('.png')}")


def pixel_levels(data: np.ndarray, num_bins: int | None) -> tuple[int, float] | None:
    """`(K, h)` for pixel data: images `(n, C, H, W)` whose values are `k h`, `k` in
    `0..K-1`: integers (`h = 1`, `K = 256` for 8-bit values, else `max + 1`) or values in
    [0, 1] on a grid `k / q` with `q <= 255` (`h = 1/q`, `K = q + 1`; scikit-learn's
    digits are `k/16`). None for other data (evaluated as continuous)."""
    if data.ndim != 4 or data.min() < 0:
        return None
    if np.all(data == np.round(data)) and data.max() >= 1:
        k = int(data.max()) + 1
        return (num_bins or (256 if k <= 256 else k)), 1.0
    if data.max() > 1:
        return None
    for q in range(1, 256):
        if np.allclose(data * q, np.round(data * q), atol=1e-4):
            return (num_bins or q + 1), 1.0 / q
    return None


def _likelihood(args, config, sde, model, data, condition, dim, report) -> None:
    import diffrax as dfx

    from .._likelihood import bits_per_dim, ExactDivergence, HutchinsonDivergence

    divergence = {
        "auto": None,
        "exact": ExactDivergence(),
        "hutchinson": HutchinsonDivergence(num_probes=args.probes),
    }[args.divergence]
    options = dict(
        key=jr.key(args.seed),
        divergence=divergence,
        stepsize_controller=dfx.PIDController(rtol=args.tol, atol=args.tol),
        condition=condition,
        batch_size=min(len(data), args.batch_size),
        progress=not args.no_progress,
    )
    levels = pixel_levels(data, args.num_bins)
    report["tolerance"] = args.tol
    report["divergence"] = args.divergence
    if levels is None:
        lp = log_prob(sde, model, jnp.asarray(data), **options)
        report["log_likelihood_nats"] = float(jnp.mean(lp))
        report["bits_per_dim"] = float(-jnp.mean(lp) / (dim * jnp.log(2.0)))
        print(
            f"log-likelihood: {report['log_likelihood_nats']:.4f} nats per sample "
            f"({report['bits_per_dim']:.4f} bits/dim, continuous data)"
        )
        return
    k, h = levels
    x_int = np.round(data / h)
    if x_int.max() >= k:
        raise CLIError(f"--num-bins {k}: the data hold {int(x_int.max()) + 1} levels")
    bpd = bits_per_dim(sde, model, x_int, num_bins=k, data_range=(-h / 2, (k - 0.5) * h), **options)
    report["bits_per_dim"] = float(jnp.mean(bpd))
    report["bits_per_dim_stderr"] = float(jnp.std(bpd) / np.sqrt(len(bpd)))
    report["num_bins"] = k
    # log p of the dequantised points (continuous density), from bits/dim.
    report["log_likelihood_nats"] = float(-(report["bits_per_dim"] + np.log2(h)) * dim * np.log(2))
    print(
        f"log-likelihood: {report['bits_per_dim']:.4f} ± {report['bits_per_dim_stderr']:.4f} "
        f"bits/dim, dequantised ({k} levels per pixel, uniform dequantisation; "
        f"{report['log_likelihood_nats']:.2f} nats per dequantised sample)"
    )


def _digits_quality(x: np.ndarray, data: np.ndarray, report: dict) -> None:
    """For 8x8 digits: the Fréchet distance of the samples and of the --data rows (the
    floor, at the same count) from the training digits, and the share of samples the
    digits classifier names with confidence >= 0.9."""
    try:
        fd = metrics.digits_frechet_distance(x)
        floor = metrics.digits_frechet_distance(data)
        _, confidence = metrics.digits_predictions(x)
    except ImportError as e:  # scikit-learn missing: the digits metric is optional
        print(f"digits Fréchet distance: n/a ({e})")
        return
    report["digits_frechet_distance"] = fd
    report["digits_frechet_floor"] = floor
    report["digits_recognised"] = float(np.mean(confidence >= 0.9))
    print(
        f"digits Fréchet distance {fd:.3f} (the --data rows score {floor:.3f} against the "
        f"training digits: the floor at {len(data)} images); "
        f"{100 * report['digits_recognised']:.0f}% of samples named with confidence >= 0.9"
    )


def evaluate(args) -> None:
    run = pathlib.Path(args.run)
    config = read_run(args.run)
    data = load_data(args.data)
    if list(data.shape[1:]) != list(config["data_shape"]):
        raise CLIError(
            f"{args.data} has samples of shape {data.shape[1:]}; the run was trained on "
            f"{tuple(config['data_shape'])}"
        )
    condition = None
    if args.labels is not None:
        if not conditional(config):
            raise CLIError("--labels: this run is unconditional (trained without --labels)")
        labels = load_labels(args.labels)
        if len(labels) != len(data):
            raise CLIError(
                f"--labels {args.labels} has {len(labels)} labels but --data has {len(data)} "
                "rows: one label per data row"
            )
        k = int(config["num_classes"])
        if labels.max() >= k:
            raise CLIError(
                f"--labels {args.labels} holds labels up to {labels.max()}, but this run has "
                f"{k} classes (0..{k - 1})"
            )
        condition = jnp.asarray(labels[: args.num])
    data = data[: args.num]
    sde, state, _ = _load_state(run, config)
    report = {"run": str(run), "data": args.data, "num": int(len(data))}
    if conditional(config):
        k = int(config["num_classes"])
        if condition is None:
            condition = jnp.full((len(data),), k, jnp.int32)
            report["condition"] = "null label (unconditional model)"
            print(
                f"class-conditional run ({k} classes): evaluating the unconditional model "
                f"(null label {k}); pass --labels FILE for the class-conditional one"
            )
        else:
            report["condition"] = f"labels from {args.labels}"
            print(
                f"class-conditional run ({k} classes): evaluating the model conditioned on each "
                f"row's label from {args.labels} (samples drawn with the same labels)"
            )
    dim = int(np.prod(data.shape[1:]))
    if time_free(config):
        print("log-likelihood: n/a (a time-free model has no probability-flow ODE)")
    else:
        _likelihood(args, config, sde, state.ema_model, data, condition, dim, report)
    x = _draw(
        config,
        sde,
        state.ema_model,
        None,
        "euler",
        len(data),
        args.sample_steps,
        1e-2,
        args.seed,
        condition,
    )
    flat_x, flat_d = x.reshape(len(x), -1), data.reshape(len(data), -1)
    report["energy_distance"] = float(metrics.energy_distance(flat_x, flat_d))
    report["mmd"] = float(metrics.mmd(flat_x, flat_d))
    report["sliced_wasserstein"] = float(
        metrics.sliced_wasserstein(flat_x, flat_d, key=jr.key(args.seed))
    )
    print(
        f"energy distance {report['energy_distance']:.5f}, MMD {report['mmd']:.5f}, "
        f"sliced W2 {report['sliced_wasserstein']:.4f} ({len(x)} samples vs the data)"
    )
    if tuple(data.shape[1:]) == (1, 8, 8) and data.min() >= 0 and data.max() <= 1 and len(x) > 1:
        _digits_quality(x, data, report)
    (run / "evaluation.json").write_text(json.dumps(report, indent=2))
