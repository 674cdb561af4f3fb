#!/usr/bin/env python
"""Reproduce the shipped mini evaluator weights in one command, and report the wall time.

    python benchmarks/train_mini_evaluators.py [--json] [--out DIR] [--root SYNTH_ROOT]

is the same as ``asva-bench train evaluators --profile mini`` (all its options
pass through): builds synth if missing, decodes it once into a clip cache,
trains the mini sync classifier and the mini embedding model side by side
(two single-threaded processes), writes ``asva_bench/backbones/mini_weights/``
(mini-sync.*, mini-embedding.*, manifest.json with sha256 pins and the
timings), then measures the quality bars on synth's test split. Resumable:
rerun the same command after an interruption. Exit code 1 if a bar fails.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asva_bench.training.cli import add_commands  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="train_mini_evaluators.py")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "evaluators", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
