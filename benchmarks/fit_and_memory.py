"""`model.fit` speed and peak memory: keras_optnotes' Adam against `keras.optimizers.Adam`.

1. Time per step of `model.fit` on a small CNN (generated 28×28 images, batch 64), with
   `model.compile(jit_compile=True)` and `False`; median over epochs after the first.
2. Peak resident memory of a process that builds a ~50M-parameter MLP and runs one
   training step, each optimizer in its own fresh process (so that one's peak does not
   hide the other's). Target: ours ≤ 1.1× Keras.

    python benchmarks/fit_and_memory.py [--epochs 4] [--rounds 3] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _optimizer(which: str):
    import keras

    from keras_optnotes import optimizers

    if which == "keras":
        return keras.optimizers.Adam(1e-3)
    return optimizers.Adam(1e-3, jit_compile=which == "ours")


def fit_time(which: str, jit_compile: bool, epochs: int) -> float:
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=2048)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=_optimizer(which),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    times: list[float] = []
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=[Timer()])
    steps = len(x) // 64
    return statistics.median(times[1:]) / steps


def peak_memory_child(which: str) -> None:
    """In a fresh process: one training step of a ~50M-parameter MLP; print peak RSS."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    width = 2500  # 8 layers of 2500×2500 ≈ 50M parameters
    layers = [keras.Input((width,))]
    layers += [keras.layers.Dense(width) for _ in range(8)]
    model = keras.Sequential(layers)
    model.compile(optimizer=_optimizer(which), loss="mse", jit_compile=False)
    x = np.ones((8, width), "float32")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.train_on_batch(x, x)
    model.train_on_batch(x, x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"params": model.count_params(), "peak_kib": peak, "before_kib": before}
        )
    )


def peak_memory(which: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", which],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--memory-child",
        choices=["keras", "ours", "ours-plain"],
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.memory_child:
        peak_memory_child(args.memory_child)
        return

    import keras
    import tensorflow as tf

    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores; "
        f"small CNN (~52k parameters), batch 64, median of epochs 2–{args.epochs}, "
        f"median of {args.rounds} alternating rounds\n"
    )
    print(
        "| model.compile(jit_compile=) | keras Adam (ms/step) | keras_optnotes Adam (ms/step) | keras / ours |"
    )
    print("|---|---:|---:|---:|")
    for jit in (True, False):
        # Alternate the two, several rounds: the first fits of a process run slower.
        samples = {"keras": [], "ours": []}
        for _ in range(args.rounds):
            for which in ("keras", "ours"):
                samples[which].append(fit_time(which, jit, args.epochs))
        theirs = statistics.median(samples["keras"])
        ours = statistics.median(samples["ours"])
        print(
            f"| {jit} | {theirs * 1e3:.2f} | {ours * 1e3:.2f} | {theirs / ours:.2f}× |",
            flush=True,
        )

    if args.skip_memory:
        return
    theirs = peak_memory("keras")
    ours = {which: peak_memory(which) for which in ("ours", "ours-plain")}
    print(
        f"\nPeak resident memory, one process per optimizer, MLP of {theirs['params'] / 1e6:.1f}M parameters, two train steps\n"
    )
    print("| optimizer | peak RSS (MiB) | ours / keras |")
    print("|---|---:|---:|")
    print(f"| keras.optimizers.Adam | {theirs['peak_kib'] / 1024:.0f} | |")
    for which, label in (
        ("ours", "fused, default"),
        ("ours-plain", "jit_compile=False"),
    ):
        peak = ours[which]["peak_kib"]
        print(
            f"| keras_optnotes Adam ({label}) | {peak / 1024:.0f} | {peak / theirs['peak_kib']:.3f}× |"
        )


if __name__ == "__main__":
    main()
