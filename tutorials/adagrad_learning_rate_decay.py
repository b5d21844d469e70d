"""Does Adagrad's learning rate really shrink towards zero, and do its successors fix it?

The question. The notes' Adagrad divides the step by the square root of G, the *sum* of
all squared gradients so far:

    G ← G + g² ;  θ ← θ − η g / √(G + ε)

and they complain that, since G only grows, the effective step size η / √(G + ε) of
every parameter keeps shrinking until learning stalls. RMSprop replaces the sum by an
exponential moving average, G ← ρ G + (1 − ρ) g², Adadelta does the same and also puts
a running average of past squared updates in the numerator, and Adam does it with
bias-corrected averages m and v: their denominators follow the *recent* gradients, so
their step sizes should not decay. Is that what happens in training?

The setup. The small MLP of `keras_optnotes.models.build_classifier` (two hidden
layers of 64, 8,970 weights) on the 8×8 handwritten digits flattened to 64 inputs
(`data.load("digits")`, no network), trained from the same initial weights on the same
batches with `Adagrad`, `Adadelta`, `RMSprop` and `Adam` of this package, each at a
learning rate at which it reaches about 98 % validation accuracy (Adagrad's is the
package's default 0.01, Adadelta's the paper's 1.0). `keras_optnotes.callbacks.OptimizerStateMonitor` logs, at the end of
each epoch, percentiles over all parameters of the per-parameter step size the rule
would use next: η / √(G + ε) for Adagrad and RMSprop, η √(E_Δ + ε) / √(E_g + ε) for
Adadelta, η √(1 − β2ᵗ) / √(v + ε) (the factor multiplying m̂) for Adam.

How to read the output. The table gives each rule's median effective step size after
the first and after the last epoch and their ratio, the number of epochs in which it
fell, and the final validation accuracy. Adagrad's median falls in every epoch (G is a
sum of squares, so every parameter's step can only fall, and so can the median); with
gradients of a steady size it falls like 1/√t, to about 1/√E of its first-epoch value
after E epochs (less when the gradients shrink as training converges). RMSprop's,
Adadelta's and Adam's do not shrink that way: they follow the size of the recent
gradients, so they stay level or *grow* as training converges and the gradients get
smaller. (On a network whose gradients grow during training, e.g. a CNN leaving the
flat start of its loss, their step sizes fall too; but they would rise again, while
Adagrad's never can.) The figure `adagrad_learning_rate_decay.png` plots the median per
epoch on a log scale with the 5th–95th percentile band.

Run:

    python tutorials/adagrad_learning_rate_decay.py           # under a minute, 2 CPUs
    python tutorials/adagrad_learning_rate_decay.py --quick   # smoke run, seconds

References:
    Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
    Stochastic Optimization", JMLR 2011.
    Tieleman & Hinton, "Lecture 6.5 — RMSprop", COURSERA: Neural Networks for Machine
    Learning, 2012.
    Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012.
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_optnotes import data, optimizers  # noqa: E402
from keras_optnotes.callbacks import OptimizerStateMonitor  # noqa: E402
from keras_optnotes.models import build_classifier  # noqa: E402
from keras_optnotes.report import markdown_table, new_figure  # noqa: E402

DEFAULT_OUT = "./optnotes-report/tutorials"
FIGURE = "adagrad_learning_rate_decay.png"
# Learning rates at which each rule trains this network well: Adagrad's is the
# package's default, Adadelta's the paper's, RMSprop's and Adam's the usual 1e-3.
LEARNING_RATES = {"Adagrad": 0.01, "Adadelta": 1.0, "RMSprop": 1e-3, "Adam": 1e-3}
# --quick also skips the optimizers' XLA compilation, which costs seconds, not
# accuracy: both paths give the same numbers to rounding (SPEC §6).
SETTINGS = {
    False: {"epochs": 30, "batch_size": 64, "max_samples": None, "jit_compile": True},
    True: {"epochs": 4, "batch_size": 64, "max_samples": 384, "jit_compile": False},
}
KEYS = {name: f"effective_learning_rate_{name}" for name in ("p5", "median", "p95")}


def train(
    rule: str,
    split,
    epochs: int,
    batch_size: int,
    seed: int,
    jit_compile: bool = True,
) -> dict:
    """Trains a fresh seeded MLP with `rule`; returns its per-epoch history."""
    model = build_classifier(split.input_shape, split.num_classes, seed=seed)
    model.compile(
        optimizer=optimizers.get(
            rule, learning_rate=LEARNING_RATES[rule], jit_compile=jit_compile
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # The train step itself: a network this small trains faster without XLA on
        # a CPU.
        jit_compile=False,
    )
    keras.utils.set_random_seed(seed)  # the same batch order for every rule
    history = model.fit(
        split.x_train,
        split.y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(split.x_val, split.y_val),
        callbacks=[OptimizerStateMonitor()],
        verbose=0,
    )
    return {key: np.asarray(values) for key, values in history.history.items()}


def summary_row(rule: str, history: dict) -> dict:
    median = history[KEYS["median"]]
    return {
        "rule": rule,
        "learning_rate": LEARNING_RATES[rule],
        "first": float(median[0]),
        "last": float(median[-1]),
        "ratio": float(median[-1] / median[0]),
        "epochs_falling": int(np.sum(np.diff(median) < 0)),
        "val_accuracy": float(history["val_accuracy"][-1]),
    }


def plot(histories: dict, path: Path, title: str) -> None:
    figure = new_figure(figsize=(7.5, 4.5), layout="constrained")
    axes = figure.subplots()
    for rule, history in histories.items():
        epochs = np.arange(1, len(history[KEYS["median"]]) + 1)
        (line,) = axes.plot(
            epochs,
            history[KEYS["median"]],
            marker=".",
            label=f"{rule} (η={LEARNING_RATES[rule]:g})",
        )
        axes.fill_between(
            epochs,
            history[KEYS["p5"]],
            history[KEYS["p95"]],
            color=line.get_color(),
            alpha=0.12,
        )
    axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("effective step size per parameter (median; 5–95 % band)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title(title)
    figure.savefig(path, dpi=110)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Adagrad's effective learning rate against RMSprop's, "
        "Adadelta's and Adam's, measured while training on digits."
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for the PNG")
    parser.add_argument("--seed", type=int, default=0, help="weights, split, batches")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Trains every rule, prints the table, writes the figure; returns the numbers."""
    args = parse_args(argv)
    settings = SETTINGS[args.quick]
    start = time.perf_counter()
    split = data.load("digits", seed=args.seed, max_samples=settings["max_samples"])
    split = dataclasses.replace(  # 8×8 images → 64 inputs, so the model is an MLP
        split,
        x_train=split.x_train.reshape(len(split.x_train), -1),
        x_val=split.x_val.reshape(len(split.x_val), -1),
    )
    histories = {
        rule: train(
            rule,
            split,
            settings["epochs"],
            settings["batch_size"],
            args.seed,
            settings["jit_compile"],
        )
        for rule in LEARNING_RATES
    }
    rows = [summary_row(rule, history) for rule, history in histories.items()]
    table = markdown_table(
        [
            "rule",
            "η",
            "median step, epoch 1",
            f"median step, epoch {settings['epochs']}",
            "last / first",
            f"epochs it fell (of {settings['epochs'] - 1})",
            "val accuracy",
        ],
        [list(row.values()) for row in rows],
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure = out / FIGURE
    plot(
        histories,
        figure,
        f"Effective step size on digits, MLP, batch {settings['batch_size']}",
    )
    print(
        f"## Median effective step size per epoch ({len(split.x_train)} training "
        f"digits, {settings['epochs']} epochs, batch {settings['batch_size']})\n\n"
        f"{table}\nWrote {figure} in {time.perf_counter() - start:.0f} s"
    )
    return {"histories": histories, "rows": rows, "figure": figure}


if __name__ == "__main__":
    main()
