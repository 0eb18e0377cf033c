"""Command line: `python -m scoresde demo [--out DIR] [--num N] [--seed S]`."""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scoresde", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="sample a 2-D Gaussian mixture with every sampler")
    demo.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    demo.add_argument("--num", type=int, default=5000, help="samples per sampler (default 5000)")
    demo.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.num < 1:
            parser.error("--num must be >= 1")
        from ._demo import run

        run(args.out, args.num, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
