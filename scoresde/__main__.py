"""Command line: `python -m scoresde demo [--out DIR] [--num N] [--seed S] [--steps K]`."""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scoresde", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="train on the swiss roll, sample three ways, print metrics, write figures"
    )
    demo.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    demo.add_argument("--num", type=int, default=5000, help="samples per sampler (default 5000)")
    demo.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    demo.add_argument("--steps", type=int, default=6000, help="training steps (default 6000)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.num < 2:
            parser.error("--num must be >= 2")
        if args.steps < 1:
            parser.error("--steps must be >= 1")
        from ._demo import run

        run(args.out, args.num, args.seed, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
