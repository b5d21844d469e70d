"""One worker of a two-worker `MultiWorkerMirroredStrategy` cluster on 127.0.0.1.

Launched by `tests/test_multi_worker.py`, twice, each with its own `TF_CONFIG`. It
trains the model of `tiny_model()` with a custom training loop, once per rule named on
the command line, and writes the final weights and what it saw of the optimizer's path.
Then it tries `Model.fit` under the same strategy and records how that ended.

    python multi_worker.py INPUTS.npz OUT_DIR RULE [RULE ...]

INPUTS.npz holds the initial weights (`weight/0`, `weight/1`, ...), the data `x`, `y`
and `global_batch`. OUT_DIR receives `worker_<index>.npz` (`<rule>/<i>`: the weights
after the loop) and `worker_<index>.json` (what the worker saw, and how `fit` ended).
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import numpy as np


def tiny_model():
    """The model every run trains: 4 inputs, 8 tanh units, 1 output."""
    import keras

    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1)]
    )


def make_optimizer(rule: str):
    from keras_optnotes import optimizers

    return optimizers.get(rule, learning_rate=0.05)


def make_train_step(strategy, model, optimizer, global_batch: int, seen: dict):
    """The distributed train step of the recipe: per-replica loss scaled by the global
    batch, gradients all-reduced (summed) by `apply_gradients` across the replicas."""
    import keras
    import tensorflow as tf

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            per_example = keras.losses.mean_squared_error(yb, model(xb))
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch
            )
        gradients = tape.gradient(loss, model.trainable_variables)
        # Read while tracing, in the replica context where `apply()` runs.
        seen["in_replica"] = optimizer.uses_fused_apply
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function
    def train_step(iterator):
        losses = strategy.run(replica_step, args=next(iterator))
        return strategy.reduce("SUM", losses, axis=None)

    return train_step


def main(argv: list[str]) -> int:
    inputs_path, out_dir, *rules = argv
    import tensorflow as tf

    # The strategy must exist before any other TensorFlow op runs in this process.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    inputs = np.load(inputs_path)
    count = sum(key.startswith("weight/") for key in inputs.files)
    initial = [inputs[f"weight/{i}"] for i in range(count)]
    x, y = inputs["x"], inputs["y"]
    global_batch = int(inputs["global_batch"])
    steps = len(x) // global_batch

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        # Element i goes to worker i mod 2: the per-replica batches of step s are
        # together exactly global batch s of the single-process run.
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        return dataset.batch(context.get_per_replica_batch_size(global_batch))

    report = {
        "task": task,
        "num_replicas_in_sync": strategy.num_replicas_in_sync,
        "rules": {},
    }
    weights = {}
    for rule in rules:
        with strategy.scope():
            model = tiny_model()
            model.set_weights(initial)
            optimizer = make_optimizer(rule)
            optimizer.build(model.trainable_variables)
        seen = {"in_scope": optimizer.uses_fused_apply}

        train_step = make_train_step(strategy, model, optimizer, global_batch, seen)
        iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
        losses = [float(train_step(iterator)) for _ in range(steps)]
        report["rules"][rule] = {
            "uses_fused_apply": seen,
            "losses": losses,
            "iterations": int(optimizer.iterations.numpy()),
        }
        for i, w in enumerate(model.get_weights()):
            weights[f"{rule}/{i}"] = w
    np.savez(os.path.join(out_dir, f"worker_{task}.npz"), **weights)
    # Written before `fit` is tried, so a hang there loses nothing of the loop.
    with open(os.path.join(out_dir, f"worker_{task}.json"), "w") as f:
        json.dump(report, f)

    try:
        with strategy.scope():
            model = tiny_model()
            model.set_weights(initial)
            model.compile(optimizer=make_optimizer(rules[0]), loss="mse")
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch)
        model.fit(dataset, epochs=1, verbose=0)
        report["fit"] = {"ok": True}
    except Exception as error:  # noqa: BLE001 - the test reads what failed and how
        report["fit"] = {
            "ok": False,
            "error": f"{type(error).__name__}: {error}"[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
    with open(os.path.join(out_dir, f"worker_{task}.json"), "w") as f:
        json.dump(report, f)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.exit(main(sys.argv[1:]))
