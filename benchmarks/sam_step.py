"""Time per step of `fit` with SharpnessAwareMinimization against the plain step.

A small CNN with batch normalization on generated 28×28 images (batch 64, SGD with
momentum), the model's own default `jit_compile`; time per step is the median over the
epochs after the first (compilation), and the figure reported per variant is the median
over rounds of its ratio to the plain step measured in the same round. SAM does two
forward and backward passes and one optimizer step, so the ratio to one pass and one
step is below 2 and approaches 2 as the passes dominate.

Each backend runs in its own process (Keras picks its backend once per process).

    python benchmarks/sam_step.py [--backends tensorflow,jax] [--rounds 3] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = {
    "plain": None,
    "SAM": {},
    "ASAM": {"adaptive": True},
    "SAM, 4 splits": {"num_batch_splits": 4},
}
SAMPLES, BATCH = 2048, 64


def step_times(variant: str, epochs: int) -> float:
    """Median seconds per step of `fit` over the epochs after the first."""
    import keras
    import numpy as np

    from keras_optnotes.training import SharpnessAwareMinimization

    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=SAMPLES)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    options = VARIANTS[variant]
    trained = model if options is None else SharpnessAwareMinimization(model, **options)
    trained.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    durations = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            durations.append((time.perf_counter() - self.start) / (SAMPLES // BATCH))

    trained.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[Clock()])
    return statistics.median(durations[1:])


def run_backend(rounds: int, epochs: int) -> dict:
    """{variant: {"step_ms": median ms, "ratio": median ratio to plain}}."""
    times = {variant: [] for variant in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            times[variant].append(step_times(variant, epochs))
    result = {}
    for variant, values in times.items():
        ratios = [v / p for v, p in zip(values, times["plain"])]
        result[variant] = {
            "step_ms": 1000 * statistics.median(values),
            "ratio": statistics.median(ratios),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_backend(args.rounds, args.epochs)))
        return
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
        command = [
            sys.executable,
            __file__,
            "--child",
            f"--rounds={args.rounds}",
            f"--epochs={args.epochs}",
        ]
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{backend}: failed\n{run.stderr[-2000:]}", file=sys.stderr)
            continue
        result = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"\n{backend}: ms per step (median), ratio to plain (median of rounds)")
        for variant, figures in result.items():
            print(
                f"  {variant:<14} {figures['step_ms']:7.2f} ms  {figures['ratio']:.2f}x"
            )


if __name__ == "__main__":
    main()
