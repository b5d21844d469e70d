"""Argument types, shared options and helpers of the `keras-optnotes` sub-commands."""

from __future__ import annotations

import argparse
import math

from keras_optnotes._usage import UsageError
from keras_optnotes.data import DATASETS


def checked_number(text: str, convert, valid, accepted: str):
    """`convert(text)` if it parses and `valid` accepts it, else an argparse error
    "expected <accepted>, received <text>"."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {accepted}, received {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    return checked_number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    return checked_number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return checked_number(
        text, float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0"
    )


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    return checked_number(text, float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def add_dataset_argument(parser: argparse.ArgumentParser) -> None:
    """`--dataset`, one of `keras_optnotes.data.DATASETS`, digits by default."""
    parser.add_argument(
        "--dataset",
        default="digits",
        choices=DATASETS,
        help="dataset (default: digits; mnist and cifar10 need a network once)",
    )


def load_dataset(name: str, **kwargs):
    """`keras_optnotes.data.load(name, **kwargs)`; a dataset that cannot be had
    (no network, a missing extra) is a `UsageError` naming `--dataset`."""
    from keras_optnotes import data

    try:
        return data.load(name, **kwargs)
    except (ImportError, data.DatasetUnavailableError) as error:
        raise UsageError(f"--dataset {name}: {error}") from error


def add_seed_argument(parser: argparse.ArgumentParser, seeds: str) -> None:
    """`--seed S` (≥ 0, default 0); `seeds` says what it seeds."""
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        metavar="S",
        help=f"seed of {seeds} (default: 0)",
    )


def add_edge_extensions_argument(parser: argparse.ArgumentParser) -> None:
    """`--edge-extensions N` (≥ 0; default: the protocol's, 0 with --quick)."""
    from keras_optnotes.experiments.protocol import EDGE_EXTENSIONS

    parser.add_argument(
        "--edge-extensions",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="extend a learning-rate grid whose winner is its smallest or largest "
        "value by one more value past that edge, at most N times (default: "
        f"{EDGE_EXTENSIONS}; --quick: 0)",
    )


def edge_extensions(args: argparse.Namespace) -> int:
    """`--edge-extensions`, or its default for a full or a `--quick` run."""
    from keras_optnotes.experiments.protocol import EDGE_EXTENSIONS

    if args.edge_extensions is not None:
        return args.edge_extensions
    return 0 if args.quick else EDGE_EXTENSIONS


def add_output_arguments(
    parser: argparse.ArgumentParser, default_out: str, quick: str
) -> None:
    """`--out DIR` and `--quick` (`quick` describes the smoke run)."""
    parser.add_argument(
        "--out",
        default=default_out,
        metavar="DIR",
        help=f"output folder (default: ./{default_out}/)",
    )
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {quick}")
