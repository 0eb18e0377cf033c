"""Run directories: the exact configuration of a training run, and how to rebuild its
SDE, model, objective and optimiser from it."""

import difflib
import json
import math
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.random as jr
import numpy as np
import optax
import tomllib

from .. import datasets, nn
from .._ncsnv2 import max_pairwise_distance
from .._objective import (
    DenoisingScoreMatching,
    ImplicitScoreMatching,
    MultiNoiseDSM,
    SlicedScoreMatching,
)
from .._score import DirectScore, NoisePrediction
from .._sde import SubVPSDE, VESDE, VPSDE


FORMAT = 1
CONFIG = "config.toml"
CHECKPOINT = "checkpoint.ckpt"
DATASETS = {
    "swiss_roll": lambda n, k: datasets.swiss_roll(n, key=k, noise=0.5),
    "two_moons": lambda n, k: datasets.two_moons(n, key=k),
    "checkerboard": lambda n, k: datasets.checkerboard(n, key=k),
    "eight_gaussians": lambda n, k: datasets.eight_gaussians(n, key=k),
    "pinwheel": lambda n, k: datasets.pinwheel(n, key=k),
    "circle": lambda n, k: datasets.circle(n, key=k),
    "ncsn_mixture": lambda n, k: datasets.ncsn_mixture(n, key=k),
    # All 1497 training images of the fixed split (--num-data caps them); (n, 1, 8, 8).
    "digits": lambda n, k: datasets.load_digits(split="train")[0][:n],
}


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


class Option(NamedTuple):
    """What a config value must be: `expected` in words, `ok` the test, and for a choice
    its allowed `values` (to suggest the nearest)."""

    expected: str
    ok: Callable[[Any], bool]
    values: tuple = ()


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def integer(minimum: int | None = None) -> Option:
    if minimum is None:
        return Option("an integer", _is_int)
    return Option(f"an integer >= {minimum}", lambda v: _is_int(v) and v >= minimum)


def choice(values) -> Option:
    values = list(values)
    words = ", ".join(json.dumps(v) for v in values)
    return Option(f"one of {words}", lambda v: isinstance(v, str) and v in values, tuple(values))


# jax.random.key takes a 64-bit integer; the data set's key is seed + 1.
SEED = Option(
    "an integer between -2**62 and 2**62", lambda v: _is_int(v) and -(2**62) <= v <= 2**62
)
TEXT = Option("a string", lambda v: isinstance(v, str) and v != "")
POSITIVE = Option("a finite number > 0", lambda v: _is_number(v) and v > 0)
DROPOUT = Option("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1)
MULTS = Option(
    "a non-empty list of integers >= 1, e.g. [1, 2]",
    lambda v: isinstance(v, list) and bool(v) and all(_is_int(m) and m >= 1 for m in v),
)
DATA_SHAPE = Option(
    "the shape of one sample: [d] for vectors or [C, H, W] for images",
    lambda v: isinstance(v, list) and len(v) in (1, 3) and all(_is_int(m) and m >= 1 for m in v),
)
SDES = ["vp", "subvp", "ve"]
OBJECTIVES = ["dsm", "ism", "ssm", "ncsn"]

# Every option of `scoresde train` (also its --config file's keys), and what it must be.
TRAIN_OPTIONS: dict[str, Option] = {
    "data": TEXT,
    "dataset": choice(sorted(DATASETS)),
    "num_data": integer(1),
    "sde": choice(SDES),
    "objective": choice(OBJECTIVES),
    "steps": integer(1),
    "batch_size": integer(1),
    "lr": POSITIVE,
    "width": integer(1),
    "depth": integer(0),
    "num_levels": integer(2),
    "base_channels": integer(1),
    "channel_mults": MULTS,
    "num_res_blocks": integer(1),
    "checkpoint_every": integer(1),
    "seed": SEED,
    "out": TEXT,
    "labels": TEXT,
    "condition_dropout": DROPOUT,
}
# What `scoresde train` adds to a run's config.toml.
RUN_OPTIONS: dict[str, Option] = {
    **TRAIN_OPTIONS,
    "format": integer(),
    "scoresde": TEXT,
    "data_shape": DATA_SHAPE,
    "num_classes": integer(1),
    "sigma_max": POSITIVE,
}
# In every run's config.toml since the first version of format 1 (and sigma_max for
# sde = "ve"); the U-Net's and the labels' options came later and have defaults.
RUN_REQUIRED = [
    "num_data",
    "sde",
    "objective",
    "steps",
    "batch_size",
    "lr",
    "width",
    "depth",
    "num_levels",
    "checkpoint_every",
    "seed",
    "out",
    "data_shape",
]
UNET_OPTIONS = ("base_channels", "channel_mults", "num_res_blocks")
# The values that define the trained function: recorded in each checkpoint, so an edit
# of config.toml afterwards is refused instead of sampling another model.
DEFINING = [
    "sde",
    "sigma_max",
    "objective",
    "num_levels",
    "data_shape",
    "width",
    "depth",
    "base_channels",
    "channel_mults",
    "num_res_blocks",
    "num_classes",
]


def toml_value(v) -> str:
    """`v` as written in a TOML file (strings in double quotes)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str, list)):
        return json.dumps(v)
    return f"a {type(v).__name__}"


def nearest(name: str, names, show: Callable[[str], str] = str) -> str:
    """` (did you mean X?)` for the closest of `names`, or nothing."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f" (did you mean {show(close[0])}?)" if close else ""


def check_value(where: str, name: str, value, option: Option) -> None:
    """A CLIError `WHERE NAME must be EXPECTED, got VALUE` for a bad value. `where` is ""
    for a command-line option (`name` is then `--name`), else the file and a colon."""
    if option.ok(value):
        return
    hint = nearest(value, option.values, json.dumps) if isinstance(value, str) else ""
    raise CLIError(f"{where}{name} must be {option.expected}, got {toml_value(value)}{hint}")


def check_config_file(path, given: dict, options: dict[str, Option]) -> None:
    """Every key of a TOML file known, every value of the right type and range."""
    for name in given:
        if name not in options:
            raise CLIError(
                f"{path}: unknown option {name!r}{nearest(name, options, repr)}; known: "
                f"{', '.join(sorted(options))}"
            )
    for name, value in given.items():
        check_value(f"{path}: ", name, value, options[name])


def load_data(path: str) -> np.ndarray:
    """`.npy`, `.npz` (its only array, or the one named `data`) or `.csv` (numbers only,
    one row per sample) as a float32 array `(n, *data_shape)`."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise CLIError(f"no data file at {file}")
    try:
        if file.suffix == ".npy":
            data = np.load(file)
        elif file.suffix == ".npz":
            with np.load(file) as z:
                names = list(z.keys())
                if "data" not in names and len(names) != 1:
                    raise CLIError(f"{file} holds {names}: name the array 'data'")
                data = z["data" if "data" in names else names[0]]
        elif file.suffix == ".csv":
            data = np.loadtxt(file, delimiter=",", ndmin=2)
        else:
            raise CLIError(f"{file}: use a .npy, .npz or .csv file")
    except (ValueError, OSError) as e:
        raise CLIError(f"cannot read {file}: {e}") from e
    if data.ndim not in (2, 4):
        raise CLIError(
            f"{file} has shape {data.shape}: expected (n, d) vectors or (n, C, H, W) images"
        )
    if not np.all(np.isfinite(data)):
        raise CLIError(f"{file} contains NaN or inf")
    return data.astype(np.float32)


MAX_CLASSES = 65536


def load_labels(path: str, option: str = "--labels") -> np.ndarray:
    """Integer class labels `(n,)` from a `.npy`, an `.npz` (its array named `labels`, or
    its only array) or a `.csv` (one label per line) file, checked: 1-D, integer-valued
    (floats holding integers are cast), non-negative. Errors name `option`."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise CLIError(f"{option}: no labels file at {file}")
    try:
        if file.suffix == ".npy":
            labels = np.load(file)
        elif file.suffix == ".npz":
            with np.load(file) as z:
                names = list(z.keys())
                if "labels" not in names and len(names) != 1:
                    raise CLIError(f"{option} {file} holds {names}: name the array 'labels'")
                labels = z["labels" if "labels" in names else names[0]]
        elif file.suffix == ".csv":
            labels = np.loadtxt(file, delimiter=",", ndmin=1)
        else:
            raise CLIError(f"{option} {file}: use a .npy, .npz or .csv file")
    except (ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"{option}: cannot read {file}: {first}") from e
    array = " ('labels' array)" if file.suffix == ".npz" else ""
    return check_labels(labels, f"{option} {file}{array}")


def check_labels(labels: np.ndarray, what: str) -> np.ndarray:
    """`labels` as int32 `(n,)`, or a one-line CLIError starting with `what`."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise CLIError(
            f"{what} has shape {labels.shape}: expected one integer label per data row, shape (n,)"
        )
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    if np.issubdtype(labels.dtype, np.floating):
        whole = np.isfinite(labels) & (labels == np.round(labels))
        if not whole.all():
            bad = labels[~whole][0]
            raise CLIError(
                f"{what} holds non-integer values (e.g. {bad}): class labels must be "
                "integers 0, 1, 2, ..."
            )
    elif not np.issubdtype(labels.dtype, np.integer):
        raise CLIError(f"{what} has dtype {labels.dtype}: class labels must be integers")
    if labels.size and labels.min() < 0:
        raise CLIError(
            f"{what} holds negative labels (min {labels.min():g}): class labels must be "
            "0, 1, 2, ..."
        )
    if labels.size and labels.max() >= MAX_CLASSES:
        raise CLIError(
            f"{what} holds labels up to {labels.max():g}: at most {MAX_CLASSES} classes; "
            "renumber them 0, 1, 2, ..."
        )
    return labels.astype(np.int32)


def npz_labels(path: str) -> bool:
    """Whether `path` is an `.npz` holding an array named `labels` (beside `data`)."""
    file = pathlib.Path(path)
    if file.suffix != ".npz" or not file.is_file():
        return False
    try:
        with np.load(file) as z:
            return "labels" in z.keys()
    except (ValueError, OSError):
        return False


def training_labels(config: dict, data: np.ndarray) -> np.ndarray | None:
    """The class labels of the training data, or None for an unconditional run.

    A fresh run takes `config["labels"]` (from `--labels`), else the `labels` array of an
    `.npz` `--data`, and records `labels` (the file) and `num_classes = max + 1` in
    `config`; a resumed run (one with `num_classes`) reloads the same file and checks it
    against the run's classes. An `.npz`'s labels are not used by a time-free objective
    (ism/ssm, whose model takes no labels); an explicit `--labels` there is an error."""
    resumed = conditional(config)
    if not config.get("labels") and not resumed and config.get("data"):
        if npz_labels(config["data"]):
            if time_free(config):
                print(
                    f"note: not using the 'labels' array of {config['data']}: objective "
                    f"{config['objective']}'s time-free model takes no labels"
                )
            else:
                config["labels"] = config["data"]
    if not config.get("labels"):
        if resumed:
            raise CLIError("this conditional run's config.toml names no labels file")
        return None
    path = config["labels"]
    option = "--data" if path == config.get("data") else "--labels"
    labels = load_labels(path, option)
    if len(labels) != len(data):
        raise CLIError(
            f"{option} {path} has {len(labels)} labels but the data has {len(data)} rows: "
            "one label per data row"
        )
    k = int(labels.max()) + 1
    if resumed and k > config["num_classes"]:
        raise CLIError(
            f"{option} {path} holds labels up to {k - 1}, but this run was trained on "
            f"{config['num_classes']} classes (0..{config['num_classes'] - 1})"
        )
    config.setdefault("num_classes", k)
    return labels


def training_data(config: dict) -> np.ndarray:
    if config.get("data"):
        return load_data(config["data"])
    make = DATASETS[config["dataset"]]
    return np.asarray(make(config["num_data"], jr.key(config["seed"] + 1)))


def build_sde(config: dict, data: np.ndarray | None = None):
    if config["sde"] == "vp":
        return VPSDE()
    if config["sde"] == "subvp":
        return SubVPSDE()
    if "sigma_max" not in config:
        # NCSNv2's technique 1: the largest distance between two training points.
        config["sigma_max"] = float(max_pairwise_distance(data[: min(len(data), 4096)]))
    return VESDE(sigma_min=0.01, sigma_max=config["sigma_max"])


def time_free(config: dict) -> bool:
    return config["objective"] in ("ism", "ssm")


def conditional(config: dict) -> bool:
    """Whether the run is class-conditional (trained with labels)."""
    return config.get("num_classes") is not None


def build_model(config: dict, sde):
    shape = tuple(config["data_shape"])
    key = jr.key(config["seed"])
    k = config.get("num_classes")
    if len(shape) == 3:
        net = nn.UNet(
            shape,
            base_channels=config.get("base_channels", 32),
            channel_mults=tuple(config.get("channel_mults", (1, 2))),
            num_res_blocks=config.get("num_res_blocks", 1),
            num_classes=k,
            key=key,
        )
    elif time_free(config):
        net = nn.TimeFreeMLP(shape[0], width=config["width"], depth=config["depth"], key=key)
    else:
        net = nn.TimeMLP(
            shape[0], width=config["width"], depth=config["depth"], num_classes=k, key=key
        )
    if config["objective"] == "dsm":
        return NoisePrediction(net, sde)
    return DirectScore(net)


def build_objective(config: dict, sde):
    name = config["objective"]
    if name == "dsm":
        return DenoisingScoreMatching(sde)
    if name == "ism":
        return ImplicitScoreMatching()
    if name == "ssm":
        return SlicedScoreMatching()
    return MultiNoiseDSM(sde, config["num_levels"], eps=ncsn_eps(config, sde))


def ncsn_eps(config: dict, sde) -> float:
    """The smallest noise level: 1% of sigma_max, at least VESDE's sigma_min * 5."""
    if not isinstance(sde, VESDE):
        return sde.default_eps
    sigma_l = max(0.01 * config["sigma_max"], 0.05)
    return float(sde.t_from_sigma(sigma_l))


def build_optimizer(config: dict):
    return optax.adam(config["lr"])


def write_config(run: pathlib.Path, config: dict) -> None:
    """A flat TOML file (strings, numbers, booleans, lists of numbers)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v) if math.isfinite(v) else f'"{v}"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"{k} = {value(v)}" for k, v in config.items() if v is not None]
    tmp = run / (CONFIG + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(run / CONFIG)


def read_config(path: pathlib.Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CLIError(f"cannot read {path}: {e}") from e


def read_run(run: str) -> dict:
    """The config of a run directory written by `scoresde train`, checked for version."""
    directory = pathlib.Path(run)
    if not (directory / CONFIG).is_file():
        raise CLIError(f"{directory} is not a run directory (no {CONFIG}); train one first")
    path = directory / CONFIG
    config = read_config(path)
    if config.get("format") != FORMAT:
        raise CLIError(
            f"{directory} was written by an incompatible scoresde (run format "
            f"{config.get('format')}, this version reads {FORMAT}); retrain it"
        )
    check_config_file(path, config, RUN_OPTIONS)
    required = RUN_REQUIRED + (["sigma_max"] if config.get("sde") == "ve" else [])
    for name in required:
        if name not in config:
            raise CLIError(
                f"{path} has no {name} (scoresde train writes it, "
                f"{RUN_OPTIONS[name].expected}); restore that line, or retrain"
            )
    if not (directory / CHECKPOINT).is_file():
        raise CLIError(f"{directory} has no {CHECKPOINT}; its training did not finish a save")
    return config


def check_against_checkpoint(run: pathlib.Path, config: dict, recorded: dict | None) -> None:
    """That `config.toml` still holds the values that defined the trained model, as the
    checkpoint recorded them (runs of older versions record none: nothing to check)."""
    if not recorded:
        return
    for name, saved in recorded.items():
        now = config.get(name)
        if now != saved:
            now_text = f"{name} = {toml_value(now)}" if now is not None else f"no {name}"
            raise CLIError(
                f"{run / CONFIG} says {now_text}, but {run / CHECKPOINT} was trained with "
                f"{name} = {toml_value(saved)}; restore that value (the checkpoint defines "
                "the model), or train a new run"
            )


def defining(config: dict) -> dict:
    """The values of `config` that define the trained function (see DEFINING): the
    U-Net's sizes for images, the MLP's for vectors; `num_levels` for ncsn only (another
    run may edit it to sample annealed Langevin on another ladder)."""
    unused = ("width", "depth") if len(config["data_shape"]) == 3 else UNET_OPTIONS
    if config["objective"] != "ncsn":
        unused = (*unused, "num_levels")
    return {
        name: config[name]
        for name in DEFINING
        if name not in unused and config.get(name) is not None
    }
