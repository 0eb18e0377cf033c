"""`scoresde` / `python -m scoresde`: train, sample, evaluate, demo."""

import argparse
import math
import os
import sys
import traceback

from .._checks import equinox_message
from ._config import check_value, CLIError, DATASETS, OBJECTIVES, SDES, SEED


TRAIN_DEFAULTS = {
    "data": None,
    "dataset": "swiss_roll",
    "num_data": 20000,
    "sde": "vp",
    "objective": "dsm",
    "steps": 2000,
    "batch_size": 256,
    "lr": 2e-3,
    "width": 256,
    "depth": 3,
    "num_levels": 10,
    "base_channels": 32,
    "channel_mults": [1, 2],
    "num_res_blocks": 1,
    "checkpoint_every": 500,
    "seed": 0,
    "out": "run",
    "labels": None,
    "condition_dropout": None,
}
SAMPLERS = ["reverse-sde", "pf-ode", "langevin", "annealed-langevin", "pc"]


class _Parser(argparse.ArgumentParser):
    """Errors as one line, exit status 1, like every other user error."""

    def error(self, message):
        self.exit(1, f"{self.prog}: error: {message}\n")


def _mults(text: str) -> list[int]:
    return [int(m) for m in text.split(",")]


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scoresde",
        description=__doc__,
        epilog="A user error prints one line and exits with status 1 (set "
        "SCORESDE_TRACEBACK=1 to see its traceback too).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a score model; writes a run directory")
    train.add_argument("--config", help="a TOML file with any of these options (CLI wins)")
    source = train.add_mutually_exclusive_group()
    source.add_argument(
        "--data", help="training data: .npy, .npz or .csv, shape (n, d) or (n, C, H, W)"
    )
    source.add_argument(
        "--dataset", choices=sorted(DATASETS), help="a built-in toy data set (default swiss_roll)"
    )
    train.add_argument(
        "--labels",
        metavar="FILE",
        help="integer class labels, one per --data row (.npy, .npz or .csv): trains a "
        "class-conditional model on classes 0..max (num_classes = max + 1, and label "
        "num_classes is the null label); an .npz --data with a 'labels' array beside 'data' "
        "does this by itself",
    )
    train.add_argument(
        "--condition-dropout",
        type=float,
        metavar="P",
        help="with labels: probability in [0, 1) that a training label is replaced by the null "
        "label, so the model also learns p(x) for guidance (default 0.1)",
    )
    train.add_argument("--num-data", type=int, help="points drawn from --dataset (default 20000)")
    train.add_argument("--sde", choices=SDES, help="forward SDE (default vp)")
    train.add_argument(
        "--objective",
        choices=OBJECTIVES,
        help="denoising (default), implicit, sliced score matching, or NCSN multi-noise DSM",
    )
    train.add_argument("--steps", type=int, help="total training steps (default 2000)")
    train.add_argument("--batch-size", type=int, help="default 256")
    train.add_argument("--lr", type=float, help="Adam learning rate (default 2e-3)")
    train.add_argument("--width", type=int, help="MLP width (default 256)")
    train.add_argument("--depth", type=int, help="MLP hidden layers (default 3)")
    train.add_argument("--num-levels", type=int, help="noise levels for ncsn (default 10)")
    train.add_argument(
        "--base-channels", type=int, help="images: U-Net channels of the first level (default 32)"
    )
    train.add_argument(
        "--channel-mults",
        type=_mults,
        metavar="M1,M2,...",
        help="images: U-Net channel multiplier per resolution level (default 1,2)",
    )
    train.add_argument(
        "--num-res-blocks", type=int, help="images: U-Net residual blocks per level (default 1)"
    )
    train.add_argument(
        "--checkpoint-every", type=int, help="steps between checkpoints (default 500)"
    )
    train.add_argument("--seed", type=int, help="PRNG seed (default 0)")
    train.add_argument("--out", help="the run directory (default ./run)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    sample = sub.add_parser("sample", help="draw samples from a trained run")
    sample.add_argument("--run", default="run", help="the run directory (default ./run)")
    sample.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help="default reverse-sde (langevin for ism/ssm runs)",
    )
    sample.add_argument(
        "--solver",
        choices=["euler", "heun", "adaptive"],
        default="euler",
        help="for reverse-sde and pf-ode (default euler)",
    )
    sample.add_argument("--num", type=int, default=1000, help="number of samples (default 1000)")
    sample.add_argument("--steps", type=int, default=500, help="sampler steps (default 500)")
    sample.add_argument(
        "--step-size", type=float, default=1e-2, help="Langevin step size (default 1e-2)"
    )
    sample.add_argument(
        "--label",
        type=int,
        metavar="C",
        help="class-conditional runs: sample class C in [0, num_classes) (default: the "
        "unconditional model, through the null label)",
    )
    sample.add_argument(
        "--guidance",
        type=float,
        metavar="W",
        help="classifier-free guidance weight w >= 0 with --label: the score "
        "(1 + w) s(x | C) - w s(x) (default 0, no guidance)",
    )
    sample.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    sample.add_argument(
        "--out",
        default=None,
        help="samples .npy (default RUN/samples.npy); a PNG is written beside it",
    )

    evaluate = sub.add_parser("evaluate", help="log-likelihood and sample metrics of a run on data")
    evaluate.add_argument("--run", default="run", help="the run directory (default ./run)")
    evaluate.add_argument(
        "--data", required=True, help="evaluation data (.npy, .npz, .csv), e.g. held out"
    )
    evaluate.add_argument(
        "--num",
        type=int,
        default=1000,
        help="rows of --data used, and samples drawn (default 1000)",
    )
    evaluate.add_argument(
        "--labels",
        metavar="FILE",
        help="class-conditional runs: each --data row's label (.npy, .npz, .csv), to evaluate "
        "log p(x | label) and compare samples drawn with the same labels (default: the "
        "unconditional model, through the null label)",
    )
    evaluate.add_argument(
        "--divergence",
        choices=["auto", "exact", "hutchinson"],
        default="auto",
        help="the probability-flow divergence: the exact trace (d Jacobian-vector products "
        "per step), Hutchinson's estimate, or auto (exact only where cheap; default)",
    )
    evaluate.add_argument(
        "--probes", type=int, default=1, help="Hutchinson probes per sample (default 1)"
    )
    evaluate.add_argument(
        "--tol",
        type=float,
        default=1e-5,
        help="rtol = atol of the adaptive ODE solve (default 1e-5; 1e-3 is ~4x faster)",
    )
    evaluate.add_argument(
        "--num-bins",
        type=int,
        help="pixel levels for dequantised bits/dim (default: read from the data: 256 for "
        "8-bit integers, q + 1 for values k/q in [0, 1], e.g. 17 for the digits)",
    )
    evaluate.add_argument(
        "--batch-size", type=int, default=100, help="rows per log-likelihood batch (default 100)"
    )
    evaluate.add_argument(
        "--sample-steps",
        type=int,
        default=500,
        help="Euler steps of the reverse SDE for the samples compared with the data (default 500)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = sub.add_parser(
        "demo", help="train on the swiss roll, sample three ways, print metrics, write figures"
    )
    demo.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    demo.add_argument("--num", type=int, default=5000, help="samples per sampler (default 5000)")
    demo.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    demo.add_argument("--steps", type=int, default=6000, help="training steps (default 6000)")
    return parser


def _positive(**values) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _raised_by_scoresde(error: BaseException) -> bool:
    """Whether `error` comes from a `raise` statement in scoresde's own code: the
    innermost frame of its traceback is in the package, on a line that says `raise`."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
    if not filename.startswith(_PACKAGE + os.sep):
        return False
    import linecache

    return linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise")


def user_error(error: BaseException) -> str | None:
    """The one line to print for a user error, or None for a bug (which keeps its
    traceback: that is what a bug report needs).

    A user error is one of:

    - a `CLIError`: the command line's own checks of options, config files, data files
      and run directories;
    - an `OSError`: the environment (a missing file, no permission, a full disk);
    - a `ValueError` (a `CheckpointError` too), `TypeError`, `FloatingPointError` or
      `RuntimeError` raised by a `raise` statement in scoresde: the library's validators,
      which check every argument at the call and name the fix, `fit`'s divergence check,
      and a run's failed value check told in one line;
    - an `EquinoxRuntimeError` or `EquinoxTracetimeError` of the library's value checks
      (`eqx.error_if`; the CLI runs only the library's own models and scores).

    The same types raised anywhere else (inside JAX or numpy, or by a Python operation on
    a wrong type in our own code) are bugs, and so is every other exception."""
    import equinox as eqx

    if isinstance(error, CLIError):
        return _one_line(error)
    if isinstance(error, OSError):
        return _one_line(error) or type(error).__name__
    if isinstance(error, eqx.EquinoxTracetimeError):
        return _one_line(error)
    if isinstance(error, eqx.EquinoxRuntimeError):
        found = equinox_message(error)
        return _one_line(found) if found else None
    if isinstance(error, (ValueError, TypeError, FloatingPointError, RuntimeError)):
        return _one_line(error) if _raised_by_scoresde(error) else None
    return None


def _run(args) -> None:
    if args.seed is not None:
        check_value("", "--seed", args.seed, SEED)
    if args.command == "demo":
        _positive(steps=args.steps)
        if args.num < 2:
            raise CLIError("--num must be >= 2")
        from .._demo import run

        run(args.out, args.num, args.seed, args.steps)
    elif args.command == "train":
        from ._commands import train

        train(args, TRAIN_DEFAULTS)
    elif args.command == "sample":
        _positive(num=args.num, steps=args.steps)
        if not (math.isfinite(args.step_size) and args.step_size > 0):
            raise CLIError(f"--step-size must be > 0 (a finite number), got {args.step_size}")
        from ._commands import sample

        sample(args)
    else:
        _positive(
            num=args.num,
            probes=args.probes,
            batch_size=args.batch_size,
            sample_steps=args.sample_steps,
            num_bins=args.num_bins,
        )
        if not (math.isfinite(args.tol) and args.tol > 0):
            raise CLIError(f"--tol must be > 0 (a finite number), got {args.tol}")
        from ._commands import evaluate

        evaluate(args)


def main(argv: list[str] | None = None) -> int:
    """Runs one command. Every user error (see `user_error`) prints one line,
    `scoresde: error: ...`, to stderr and returns 1; a bug keeps its traceback."""
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except Exception as e:
        message = user_error(e)
        if message is None:
            raise
        print(f"scoresde: error: {message}", file=sys.stderr)
        if os.environ.get("SCORESDE_TRACEBACK"):
            traceback.print_exc()
        return 1
    return 0
