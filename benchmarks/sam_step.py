"""Time per step of `fit` with SharpnessAwareMinimization against the plain step.

A small CNN with batch normalization on generated 28×28 images (batch 64, SGD with
momentum). Every variant is compiled and warmed up first; then the variants take turns,
one epoch of `fit` each, `--rounds` times; the figures are the median time per step and
the median over rounds of the ratio to the plain step of the same round, by the wall
clock and by the process' CPU time (the steadier figure on a shared machine). SAM does two
forward and backward passes and one optimizer step, so the ratio to one pass and one
step is below 2 and approaches 2 as the passes dominate. With `interval=5` one step in
five is a SAM step (iterations 0, 5, 10, … run on across epochs) and the others one
pass, so the mean ratio approaches (2 + 4)/5 = 1.2; LookSAM adds the reused direction
to the gradient in those four.

Each backend runs in its own process (Keras picks its backend once per process).

    python benchmarks/sam_step.py [--backends tensorflow,jax] [--rounds 9]
                                  [--jit-compile auto|true|false]
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
    "SAM, interval 5": {"interval": 5},
    "LookSAM, interval 5": {"interval": 5, "looksam_alpha": 0.7},
}
SAMPLES, BATCH = 2048, 64


def build(variant: str, jit_compile):
    """The CNN, wrapped for `variant`, compiled; with its data."""
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
        jit_compile=jit_compile,
    )
    return trained, x, y


def epoch_step_time(trained, x, y) -> tuple[float, float]:
    """Seconds per step of one `fit` epoch: wall-clock, and CPU time of this process
    (all its threads), which other jobs on a shared machine disturb far less."""
    wall, cpu = time.perf_counter(), time.process_time()
    trained.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    steps = SAMPLES // BATCH
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def run_backend(rounds: int, jit_compile) -> dict:
    """{variant: {clock: {"step_ms": median ms, "ratio": median ratio to plain}}}
    for the clocks "wall" and "cpu".

    Every variant is built and compiled first (one warm-up epoch each); then the
    variants take turns, one epoch each, `rounds` times, so that each ratio compares
    epochs run side by side on a machine whose load drifts."""
    runs = {variant: build(variant, jit_compile) for variant in VARIANTS}
    for run in runs.values():
        epoch_step_time(*run)
    times = {variant: [] for variant in VARIANTS}
    for _ in range(rounds):
        for variant, run in runs.items():
            times[variant].append(epoch_step_time(*run))
    result = {}
    for variant, values in times.items():
        result[variant] = {}
        for index, clock in enumerate(("wall", "cpu")):
            mine = [v[index] for v in values]
            ratios = [v / p[index] for v, p in zip(mine, times["plain"])]
            result[variant][clock] = {
                "step_ms": 1000 * statistics.median(mine),
                "ratio": statistics.median(ratios),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--jit-compile", default="auto", choices=["auto", "true", "false"]
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
        print(json.dumps(run_backend(args.rounds, jit)))
        return
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
        command = [
            sys.executable,
            __file__,
            "--child",
            f"--rounds={args.rounds}",
            f"--jit-compile={args.jit_compile}",
        ]
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{backend}: failed\n{run.stderr[-2000:]}", file=sys.stderr)
            continue
        result = json.loads(run.stdout.strip().splitlines()[-1])
        print(
            f"\n{backend} (jit_compile={args.jit_compile}): per step, median; "
            "ratio to plain, median of rounds"
        )
        print(f"  {'':<20} {'wall ms':>8} {'ratio':>6} {'CPU ms':>8} {'ratio':>6}")
        for variant, clocks in result.items():
            wall, cpu = clocks["wall"], clocks["cpu"]
            print(
                f"  {variant:<20} {wall['step_ms']:8.2f} {wall['ratio']:5.2f}x "
                f"{cpu['step_ms']:8.2f} {cpu['ratio']:5.2f}x"
            )


if __name__ == "__main__":
    main()
