"""A training run killed mid-epoch and restarted with `keras.callbacks.BackupAndRestore`.

Launched by `tests/test_fault_tolerance.py`. Op determinism is on. Two set-ups train
the same model with Adam for `EPOCHS` epochs of `BATCHES` batches:

- "epoch": backups at the end of each epoch; the first process sends itself SIGKILL
  before batch `KILL_AT[1]` of epoch `KILL_AT[0]` (0-based).
- "batches": backups every `SAVE_EVERY` batches; the first process is interrupted (an
  exception, caught) before batch `INTERRUPT_AT[1]` of epoch `INTERRUPT_AT[0]`.

    python backup_and_restore.py first WORK_DIR   # "batches", then "epoch": killed
    python backup_and_restore.py second WORK_DIR  # resumes both, runs the references

The second process writes WORK_DIR/results.npz with, for `resumed_epoch`,
`resumed_batches`, `uninterrupted` and `replayed` (see `replayed_run`), the weights
(`<run>/weight/<i>`), the optimizer variables (`<run>/optimizer/<i>`) and the number of
epochs the resumed `fit` ran (`<run>/epochs_run`).
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

EPOCHS = 5
BATCHES = 4
BATCH = 16
KILL_AT = (2, 2)
SAVE_EVERY = 2
INTERRUPT_AT = (2, 3)


class Interrupted(Exception):
    pass


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(BATCHES * BATCH, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3).astype("float32")[:, None]
    return x, y


def new_model():
    import keras

    from keras_optnotes import optimizers

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    return model


def fit(model, callbacks=(), epochs: int = EPOCHS, batches: int = BATCHES):
    x, y = data()
    n = batches * BATCH
    return model.fit(
        x[:n],
        y[:n],
        batch_size=BATCH,
        epochs=epochs,
        shuffle=False,
        callbacks=list(callbacks),
        verbose=0,
    )


def stop_at(epoch: int, batch: int, stop):
    """A callback that calls `stop()` before batch `batch` of epoch `epoch`."""
    import keras

    class StopAt(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.epoch = e

        def on_train_batch_begin(self, b, logs=None):
            if (self.epoch, b) == (epoch, batch):
                stop()

    return StopAt()


def backup(work_dir: str, setup: str):
    import keras

    save_freq = "epoch" if setup == "epoch" else SAVE_EVERY
    return keras.callbacks.BackupAndRestore(
        os.path.join(work_dir, f"backup_{setup}"), save_freq=save_freq
    )


def replayed_run():
    """What Keras does after an interruption under `save_freq=SAVE_EVERY`: the last
    backup holds the weights after the first batches of the interrupted epoch, and
    the restarted `fit` reruns that whole epoch from its first batch."""
    epoch, batch = INTERRUPT_AT
    saved_batches = batch // SAVE_EVERY * SAVE_EVERY
    model = new_model()
    fit(model, epochs=epoch)
    fit(model, epochs=1, batches=saved_batches)
    fit(model, epochs=EPOCHS - epoch)
    return model


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def raise_interrupted():
    raise Interrupted


def state(name: str, model, epochs_run: int | None = None) -> dict[str, np.ndarray]:
    arrays = {f"{name}/weight/{i}": w for i, w in enumerate(model.get_weights())}
    for i, variable in enumerate(model.optimizer.variables):
        arrays[f"{name}/optimizer/{i}"] = np.asarray(variable.numpy())
    if epochs_run is not None:
        arrays[f"{name}/epochs_run"] = np.array(epochs_run)
    return arrays


def main(argv: list[str]) -> int:
    phase, work_dir = argv
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    if phase == "first":
        try:
            fit(
                new_model(),
                [
                    backup(work_dir, "batches"),
                    stop_at(*INTERRUPT_AT, raise_interrupted),
                ],
            )
        except Interrupted:
            pass
        fit(new_model(), [backup(work_dir, "epoch"), stop_at(*KILL_AT, kill_self)])
        return 1  # not reached: the process is killed inside fit

    results = {}
    for setup in ("epoch", "batches"):
        model = new_model()
        history = fit(model, [backup(work_dir, setup)])
        results.update(state(f"resumed_{setup}", model, len(history.epoch)))
    model = new_model()
    fit(model)
    results.update(state("uninterrupted", model))
    results.update(state("replayed", replayed_run()))
    np.savez(os.path.join(work_dir, "results.npz"), **results)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.exit(main(sys.argv[1:]))
