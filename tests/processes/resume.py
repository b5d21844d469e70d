"""Train, save, and resume (launched by `tests/test_resume.py` and
`tests/test_checkpoint_flow.py`), on the backend `KERAS_BACKEND` names.

Op determinism is on (TensorFlow), so two runs of the same steps get the same bits.

    python resume.py first OUT_DIR   # per rule: N steps, save OUT_DIR/<rule>.keras,
                                     # N more steps -> uninterrupted.npz
    python resume.py second OUT_DIR  # per rule: load <rule>.keras, N more steps
                                     # -> resumed.npz
    python resume.py weights OUT_DIR # per rule: N steps with a
                                     # ModelCheckpoint(save_weights_only=True), N more
                                     # -> weights/uninterrupted.npz; then a new model:
                                     # compile, load_weights, N steps
                                     # -> weights/resumed.npz
    python resume.py first+weights OUT_DIR  # both phases, one after the other, in
                                            # one process

Each `.npz` holds, per rule, the model's weights (`<rule>/weight/<i>`) and every
optimizer variable (`<rule>/optimizer/<i>`: iterations, learning rate, slots).
"""

from __future__ import annotations

import os
import sys

import numpy as np

STEPS = 4  # N
BATCH = 16
# Arguments away from the defaults, so that the config stored in the file matters; a
# schedule for RMSprop, which depends on the restored iteration counter.
ARGUMENTS = {
    "GradientDescent": {"learning_rate": 0.05},
    "Momentum": {"learning_rate": 0.02, "momentum": 0.8},
    "NesterovMomentum": {"learning_rate": 0.02, "momentum": 0.7},
    "Adagrad": {"learning_rate": 0.1, "initial_accumulator_value": 0.1},
    "Adadelta": {"learning_rate": 0.5, "rho": 0.9, "epsilon": 1e-5},
    "RMSprop": {"epsilon_inside_sqrt": False},
    "Adam": {"learning_rate": 0.01, "beta_1": 0.8, "amsgrad": True},
}


def data() -> tuple[np.ndarray, np.ndarray]:
    """2N batches of a noisy linear regression."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * STEPS * BATCH, 4)).astype("float32")
    noise = 0.1 * rng.normal(size=len(x))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 + noise).astype("float32")
    return x, y[:, None]


def new_optimizer(rule: str, **overrides):
    import keras

    from keras_optnotes import optimizers

    kwargs = {**ARGUMENTS.get(rule, {}), **overrides}
    if rule == "RMSprop":
        kwargs.setdefault(
            "learning_rate",
            keras.optimizers.schedules.InverseTimeDecay(
                0.01, decay_steps=2, decay_rate=0.5
            ),
        )
    return optimizers.get(rule, **kwargs)


def new_model(rule: str):
    """The model every run starts from (same initial weights), compiled with `rule`."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=new_optimizer(rule), loss="mse")
    return model


def train(model, x, y) -> None:
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)


def state(rule: str, model) -> dict[str, np.ndarray]:
    arrays = {f"{rule}/weight/{i}": w for i, w in enumerate(model.get_weights())}
    for i, variable in enumerate(model.optimizer.variables):
        arrays[f"{rule}/optimizer/{i}"] = np.asarray(variable.numpy())
    return arrays


def resume_from_weights(out_dir: str, x, y) -> None:
    """The standard checkpoint flow: compile, `load_weights`, fit (into
    `out_dir/weights/`)."""
    import keras

    from keras_optnotes import optimizers

    out_dir = os.path.join(out_dir, "weights")
    os.makedirs(out_dir, exist_ok=True)
    half = STEPS * BATCH
    uninterrupted, resumed = {}, {}
    for rule in optimizers.list_rules():
        path = os.path.join(out_dir, f"{rule}.weights.h5")
        model = new_model(rule)
        checkpoint = keras.callbacks.ModelCheckpoint(path, save_weights_only=True)
        model.fit(
            x[:half],
            y[:half],
            batch_size=BATCH,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[checkpoint],
        )
        train(model, x[half:], y[half:])
        uninterrupted.update(state(rule, model))

        model = new_model(rule)  # compiled, its optimizer not built yet
        model.load_weights(path)
        train(model, x[half:], y[half:])
        resumed.update(state(rule, model))
    np.savez(os.path.join(out_dir, "uninterrupted.npz"), **uninterrupted)
    np.savez(os.path.join(out_dir, "resumed.npz"), **resumed)


# -- used by the tests that launch this script -------------------------------------


def run(folder, backend: str) -> dict[str, tuple]:
    """Both checkpoint flows on `backend` in `folder`: {"keras_file": (uninterrupted,
    resumed), "weights": (uninterrupted, resumed)} arrays.

    Two processes: the `.keras` file's first phase and the `load_weights` flow (which
    needs no second process) in one, then the second phase in a fresh one. The
    session fixture `resume_runs` (conftest.py) runs them once for test_resume.py and
    test_checkpoint_flow.py.
    """
    import subprocess

    from processes.launch import command, describe, environment

    for phase in ("first+weights", "second"):
        result = subprocess.run(
            command("resume.py", phase, folder),
            env=environment(KERAS_BACKEND=backend),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{phase} process: {describe(result)}"
    return {
        flow: tuple(
            np.load(os.path.join(folder, *sub, f"{name}.npz"))
            for name in ("uninterrupted", "resumed")
        )
        for flow, sub in (("keras_file", ()), ("weights", ("weights",)))
    }


def assert_resumed_exactly(uninterrupted, resumed, rule: str) -> None:
    """Every weight and optimizer variable of `rule` has the same bits in both runs."""
    keys = sorted(k for k in uninterrupted.files if k.startswith(f"{rule}/"))
    assert keys == sorted(k for k in resumed.files if k.startswith(f"{rule}/"))
    # Two kernels and two biases, the iteration counter, the rule's slots (and the
    # learning rate, except RMSprop's schedule).
    slots = {"GradientDescent": 0, "Adadelta": 8, "Adam": 12}.get(rule, 4)
    assert len(keys) == 4 + 1 + slots + (rule != "RMSprop")
    assert uninterrupted[f"{rule}/optimizer/0"] == 2 * STEPS
    for key in keys:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)


def main(argv: list[str]) -> int:
    phases, out_dir = argv
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    x, y = data()
    for phase in phases.split("+"):
        # Every phase starts from the same seed, whatever ran before it.
        keras.utils.set_random_seed(0)
        if phase == "weights":
            resume_from_weights(out_dir, x, y)
        else:
            resume_from_keras_file(phase, out_dir, x, y)
    return 0


def resume_from_keras_file(phase: str, out_dir: str, x, y) -> None:
    """`first`: N steps, save, N more; `second`: load the file, N steps."""
    import keras

    from keras_optnotes import optimizers

    if phase not in ("first", "second"):
        raise ValueError(f"phase={phase!r}: expected first, second or weights")
    half = STEPS * BATCH
    results = {}
    for rule in optimizers.list_rules():
        path = os.path.join(out_dir, f"{rule}.keras")
        if phase == "first":
            model = new_model(rule)
            train(model, x[:half], y[:half])
            model.save(path)
            # Saving only reads the state: training on is the uninterrupted run.
            train(model, x[half:], y[half:])
        else:
            model = keras.models.load_model(path)
            train(model, x[half:], y[half:])
        results.update(state(rule, model))
    name = "uninterrupted" if phase == "first" else "resumed"
    np.savez(os.path.join(out_dir, f"{name}.npz"), **results)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.exit(main(sys.argv[1:]))
