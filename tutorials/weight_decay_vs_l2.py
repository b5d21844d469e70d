"""Is decoupled weight decay the same thing as an L2 penalty?  Only without Adam.

The question. The notes regularize with a parameter norm penalty, Ω(W) = α/2 ‖W‖²,
added to the loss (SPEC §2, `regularizers.ParameterNormPenalty`). Every optimizer of
the package also takes Keras' `weight_decay=λ` keyword, which is *decoupled* weight
decay (Loshchilov & Hutter): θ ← θ − η λ θ, applied to the weights outside the
gradient, before the rule's own step. With `Adam` that is AdamW. SPEC §1 claims the two
are different things. Are they?

The claim, worked out. The penalty adds α θ to the gradient. With plain gradient
descent the two updates are

    L2 penalty:      θ ← θ − η (g + α θ)
    weight decay:    θ ← θ − η λ θ − η g

the same update when λ = α, so the weights must agree after any number of steps, to
the rounding of the floats. With Adam the penalty's α θ goes into m and v like any
other gradient and is divided by √v̂ along with it, so each weight is decayed at a rate
set by its own gradient history; decoupled decay skips the denominator and shrinks every
weight by the same factor (1 − η λ) per step. The extreme case is an input that is zero
in every image (three border pixels of the 8×8 digits): its weights get no data
gradient, so with Adam and the L2 penalty g = α θ, v̂ ≈ α² θ² and the step is η · sign(θ),
whatever α is (as long as α |θ| ≫ √ε); AdamW shrinks them by (1 − η λ)ᵗ.

The setup. The MLP of `keras_optnotes.models.build_classifier` (two hidden layers of
64) on the flattened digits (`data.load("digits")`, no network), penalties and decay on
the kernels only (biases excluded from both). Part 1 trains two copies from the same
weights on the same mini-batches with `GradientDescent`, one with
`ParameterNormPenalty(α)` through `apply_penalty`, one with `weight_decay=α`, in float64
and in float32, and records the largest weight difference after every step; then does
the same with `Adam`. Part 2 trains Adam + L2 penalty and Adam(weight_decay) at matched
strengths λ = α over a sweep, all on the same batches, and reports the kernels' norm,
what is left of the blank pixels' weights and the validation cross-entropy (the data
loss only, without the penalty).

How to read the output. In the first table, GradientDescent's max |Δθ| is rounding
(about 1e-15 in float64, 1e-7 in float32): the two are one update. Adam's is of the
size of the weights themselves. In the second table, at the same strength the L2
penalty under Adam shrinks the kernels far more than decoupled decay. From α = 1e-3 on
it removes the blank pixels' weights (a few hundredths or less left; at α = 1e-4,
α |θ| is below √ε and they decay more slowly), while AdamW at the same λ leaves almost
all of them up to λ = 0.1 (half at λ = 1, where (1 − ηλ)ᵗ ≈ e^−0.66 after 660
steps); at large α the penalty destroys the fit (validation loss near ln 10 ≈ 2.30)
where decoupled decay still trains. Matching λ = α is therefore no match under Adam:
tune weight decay and an L2 penalty separately. The figure `weight_decay_vs_l2.png` plots
both parts.

Run:

    python tutorials/weight_decay_vs_l2.py            # under a minute on 2 CPU cores
    python tutorials/weight_decay_vs_l2.py --quick    # smoke run, a few seconds

References:
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_optnotes import data, optimizers, regularizers  # noqa: E402
from keras_optnotes.models import build_classifier  # noqa: E402
from keras_optnotes.report import markdown_table, new_figure  # noqa: E402

DEFAULT_OUT = "./optnotes-report/tutorials"
FIGURE = "weight_decay_vs_l2.png"
# Steps of part 1, strengths and epochs of part 2, for the default and --quick runs.
# --quick also skips the optimizers' XLA compilation, which costs seconds, not
# accuracy: both paths give the same numbers to rounding (SPEC §6).
SETTINGS = {
    False: {
        "steps": 200,
        "strengths": (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        "epochs": 30,
        "jit_compile": True,
    },
    True: {"steps": 20, "strengths": (1e-2, 1.0), "epochs": 3, "jit_compile": False},
}
GD_LEARNING_RATE = 0.1
ADAM_LEARNING_RATE = 1e-3
IDENTITY_STRENGTH = 1e-2
BATCH_SIZE = 64


def flat_digits(seed: int, max_samples: int | None = None):
    """The digits split with each 8×8 image flattened to 64 inputs."""
    split = data.load("digits", seed=seed, max_samples=max_samples)
    return (
        split.x_train.reshape(len(split.x_train), -1),
        split.y_train,
        split.x_val.reshape(len(split.x_val), -1),
        split.y_val,
    )


@contextlib.contextmanager
def dtype_policy(name: str):
    """Builds layers in `name` inside the block; the global policy is restored after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_twin(
    rule: str,
    learning_rate: float,
    kind: str,
    strength: float,
    *,
    seed: int,
    dtype: str = "float32",
    jit_compile: bool = True,
):
    """A fresh MLP and its optimizer; `kind` is "none", "l2" or "decay".

    "l2" puts `ParameterNormPenalty(strength)` on every kernel; "decay" passes
    `weight_decay=strength` to the optimizer with the biases excluded, so both
    regularize exactly the same weights.
    """
    with dtype_policy(dtype):
        model = build_classifier((64,), 10, seed=seed)
    keyword = {"weight_decay": strength} if kind == "decay" else {}
    optimizer = optimizers.get(
        rule, learning_rate=learning_rate, jit_compile=jit_compile, **keyword
    )
    if kind == "decay":
        optimizer.exclude_from_weight_decay(var_names=["bias"])
    elif kind == "l2":
        regularizers.apply_penalty(model, regularizers.ParameterNormPenalty(strength))
    optimizer.build(model.trainable_variables)
    return model, optimizer


def train_step_function(twins: Sequence[tuple]):
    """One `tf.function` that takes a step of every (model, optimizer) on one batch.

    The loss of each model is the cross-entropy plus `model.losses` (its penalty, if
    any), exactly what `model.fit` would minimize.
    """
    losses = [
        keras.losses.SparseCategoricalCrossentropy(dtype=model.dtype)
        for model, _ in twins
    ]

    @tf.function(autograph=False)
    def step(x, y):
        for (model, optimizer), loss_fn in zip(twins, losses):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
                if model.losses:
                    loss = loss + tf.add_n(model.losses)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(gradients, model.trainable_variables)

    return step


def batches(num_samples: int, batch_size: int, seed: int):
    """Endless mini-batch index arrays: a fresh permutation each epoch."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(num_samples)
        for start in range(0, num_samples - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def max_weight_difference(first: keras.Model, second: keras.Model) -> float:
    return max(
        float(np.max(np.abs(a.numpy().astype(np.float64) - b.numpy())))
        for a, b in zip(first.trainable_variables, second.trainable_variables)
    )


def per_step_difference(
    rule: str,
    learning_rate: float,
    dtype: str,
    steps: int,
    digits,
    seed: int,
    jit_compile: bool = True,
) -> np.ndarray:
    """max |θ_L2 − θ_decay| after each of `steps` steps, both started from one point."""
    x, y = digits[0], digits[1]
    twins = [
        make_twin(
            rule,
            learning_rate,
            kind,
            IDENTITY_STRENGTH,
            seed=seed,
            dtype=dtype,
            jit_compile=jit_compile,
        )
        for kind in ("l2", "decay")
    ]
    step = train_step_function(twins)
    stream = batches(len(x), BATCH_SIZE, seed)
    differences = []
    for _ in range(steps):
        index = next(stream)
        step(tf.constant(x[index], dtype), tf.constant(y[index]))
        differences.append(max_weight_difference(twins[0][0], twins[1][0]))
    return np.asarray(differences)


def kernel_norm(model: keras.Model) -> float:
    return float(
        np.sqrt(
            sum(
                np.sum(np.square(v.numpy(), dtype=np.float64))
                for v in model.trainable_variables
                if v.name == "kernel"
            )
        )
    )


def validation_scores(model: keras.Model, x, y) -> tuple[float, float]:
    """(cross-entropy without any penalty, accuracy) on the validation set."""
    probabilities = np.asarray(model(x, training=False), np.float64)
    picked = np.clip(probabilities[np.arange(len(y)), y], 1e-12, None)
    return float(-np.mean(np.log(picked))), float(np.mean(probabilities.argmax(1) == y))


def adam_sweep(
    strengths: Sequence[float],
    epochs: int,
    digits,
    seed: int,
    jit_compile: bool = True,
) -> list:
    """Adam without regularization, with the L2 penalty and with decoupled decay at
    each strength, all from the same weights on the same batches."""
    x, y, x_val, y_val = digits
    blank = np.flatnonzero(x.max(axis=0) == 0)  # inputs zero in every training image
    configs = [("none", 0.0)] + [
        (kind, s) for s in strengths for kind in ("l2", "decay")
    ]
    twins = [
        make_twin(
            "Adam", ADAM_LEARNING_RATE, kind, s, seed=seed, jit_compile=jit_compile
        )
        for kind, s in configs
    ]
    initial_blank = np.linalg.norm(twins[0][0].trainable_variables[0].numpy()[blank])
    step = train_step_function(twins)
    stream = batches(len(x), BATCH_SIZE, seed)
    for _ in range(epochs * (len(x) // BATCH_SIZE)):
        index = next(stream)
        step(tf.constant(x[index]), tf.constant(y[index]))
    results = []
    for (kind, strength), (model, _) in zip(configs, twins):
        loss, accuracy = validation_scores(model, x_val, y_val)
        first_kernel = model.trainable_variables[0].numpy()
        results.append(
            {
                "kind": kind,
                "strength": strength,
                "kernel_norm": kernel_norm(model),
                "blank_left": float(
                    np.linalg.norm(first_kernel[blank]) / initial_blank
                ),
                "val_loss": loss,
                "val_accuracy": accuracy,
            }
        )
    return results


LABELS = {"none": "Adam", "l2": "Adam + L2 penalty α", "decay": "AdamW, λ = α"}


def plot(identity: dict, sweep: list, path: Path, title: str) -> None:
    figure = new_figure(figsize=(13, 4), layout="constrained")
    steps_axes, norm_axes, loss_axes = figure.subplots(1, 3)
    for label, differences in identity.items():
        steps = np.arange(1, len(differences) + 1)
        steps_axes.plot(steps, np.maximum(differences, 1e-18), label=label)
    steps_axes.set_yscale("log")
    steps_axes.set_xlabel("step")
    steps_axes.set_ylabel("max |θ_L2 − θ_decay|")
    steps_axes.set_title(f"same start, same batches, α = λ = {IDENTITY_STRENGTH:g}")
    steps_axes.legend(fontsize="small")
    none = next(r for r in sweep if r["kind"] == "none")
    for axes, key, what in (
        (norm_axes, "kernel_norm", "kernels' norm ‖W‖ after training"),
        (loss_axes, "val_loss", "validation cross-entropy"),
    ):
        for kind in ("l2", "decay"):
            rows = [r for r in sweep if r["kind"] == kind]
            axes.plot(
                [r["strength"] for r in rows],
                [r[key] for r in rows],
                marker="o",
                label=LABELS[kind],
            )
        axes.axhline(none[key], color="grey", linestyle="--", label="Adam, none")
        axes.set_xscale("log")
        axes.set_xlabel("strength α = λ")
        axes.set_title(what)
        axes.legend(fontsize="small")
    loss_axes.set_yscale("log")
    for axes in (steps_axes, norm_axes, loss_axes):
        axes.grid(True, which="both", alpha=0.3)
    figure.suptitle(title)
    figure.savefig(path, dpi=110)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Decoupled weight decay vs. an L2 penalty, with GD and with Adam."
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for the PNG")
    parser.add_argument("--seed", type=int, default=0, help="weights, split, batches")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs both parts, prints the tables, writes the figure; returns the numbers."""
    args = parse_args(argv)
    settings = SETTINGS[args.quick]
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    digits = flat_digits(args.seed, max_samples=512 if args.quick else None)
    runs = [
        ("GradientDescent", GD_LEARNING_RATE, "float64"),
        ("GradientDescent", GD_LEARNING_RATE, "float32"),
        ("Adam", ADAM_LEARNING_RATE, "float64"),
    ]
    identity = {
        f"{rule} (η={lr:g}), {dtype}": per_step_difference(
            rule,
            lr,
            dtype,
            settings["steps"],
            digits,
            args.seed,
            settings["jit_compile"],
        )
        for rule, lr, dtype in runs
    }
    sweep = adam_sweep(
        settings["strengths"],
        settings["epochs"],
        digits,
        args.seed,
        settings["jit_compile"],
    )

    identity_table = markdown_table(
        ["update rule, dtype", "steps", "max |Δθ| after step 1", "max |Δθ| overall"],
        [[name, len(d), float(d[0]), float(d.max())] for name, d in identity.items()],
    )
    sweep_table = markdown_table(
        [
            "Adam with",
            "α = λ",
            "‖W‖ kernels",
            "blank-pixel weights left",
            "val cross-entropy",
            "val accuracy",
        ],
        [
            [
                LABELS[r["kind"]] if r["kind"] != "none" else "nothing",
                r["strength"],
                r["kernel_norm"],
                r["blank_left"],
                r["val_loss"],
                r["val_accuracy"],
            ]
            for r in sweep
        ],
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure = out / FIGURE
    plot(
        identity,
        sweep,
        figure,
        f"L2 penalty vs decoupled weight decay on digits ({settings['epochs']} epochs"
        f" of Adam η={ADAM_LEARNING_RATE:g} in the sweep)",
    )
    print(
        f"## Part 1: L2 penalty vs weight decay, α = λ = {IDENTITY_STRENGTH:g}, "
        f"one start, one batch stream\n\n{identity_table}\n"
        f"## Part 2: Adam (η={ADAM_LEARNING_RATE:g}) at matched strengths, "
        f"{settings['epochs']} epochs, batch {BATCH_SIZE}\n\n{sweep_table}\n"
        f"Wrote {figure} in {time.perf_counter() - start:.0f} s"
    )
    return {"identity": identity, "sweep": sweep, "figure": figure}


if __name__ == "__main__":
    main()
