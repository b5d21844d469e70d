"""SAM's train step on the JAX backend: stateless, gradients by `jax.value_and_grad`.

Compiled (`jit_compile`, the default), a SAM step runs as two XLA programs, the
unperturbed passes and then the perturbed passes with the optimizer's update, rather
than as one: XLA on CPU gives the single program of both passes about 1.6× the
buffers of one pass (50 MB against 31 MB for `benchmarks/sam_step.py`'s CNN, beyond a
32 MB cache), and it ran at 2.9× the CPU time of one pass where the two programs run
at 2×. With `interval` > 1 the kind of step is chosen on the host from the
optimizer's `iterations` (one read of a scalar per step) and only its programs run.
"""

import jax
import keras

from keras_optnotes.training import sharpness_aware_minimization as sam_module


def value_and_grad(function, values):
    return jax.value_and_grad(function, has_aux=True)(values)


def _unpack(sam, state, data):
    """(trainable, non-trainable, metrics values), (x, y, sample_weight), the loss
    scale and the optimizer's iterations, read through the optimizer's values."""
    trainable, non_trainable, optimizer_values, metrics = state
    optimizer = sam.optimizer
    mapping = list(zip(optimizer.variables, optimizer_values))
    with keras.StatelessScope(state_mapping=mapping):
        loss_scale = optimizer.scale_loss(keras.ops.ones((), "float32"))
        iterations = optimizer.iterations.value
    values = (trainable, non_trainable, metrics)
    return values, keras.utils.unpack_x_y_sample_weight(data), loss_scale, iterations


def _apply(sam, state, data, result):
    """The optimizer's update with `result` (a `SamGradients`), the metrics; returns
    (logs, new state) as Keras' JAX trainer expects of a train step."""
    trainable, _, optimizer_values, _ = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    trainable, optimizer_values = sam.optimizer.stateless_apply(
        optimizer_values, result.gradients, trainable
    )
    logs, metrics = sam._update_metrics_variables(
        result.metrics_values, result.loss, x, y, result.y_pred, sample_weight
    )
    return logs, (trainable, result.non_trainable_values, optimizer_values, metrics)


def train_step(sam, state, data, kind=None, passes=None):
    """Keras' JAX train step, (logs, new state): the whole step as one function
    (`run_eagerly`, `jit_compile=False`), or one kind of step (`kind` and `passes` as
    in `train_step_gradients`)."""
    values, batch, loss_scale, iterations = _unpack(sam, state, data)
    result = sam_module.train_step_gradients(
        sam, value_and_grad, values, batch, loss_scale, iterations, kind, passes
    )
    return _apply(sam, state, data, result)


def _first_passes(sam, state, data):
    values, batch, loss_scale, _ = _unpack(sam, state, data)
    return sam_module.unperturbed_passes(
        sam, value_and_grad, *values, batch, loss_scale
    )


def make_train_function(sam):
    """Keras' JAX `train_function` for a compiled SAM step: the programs above,
    the state donated to the one that returns it, sharded as Keras' own step under
    `keras.distribution`; None (Keras' own, with the step above) without
    `jit_compile`."""
    if not sam.jit_compile:
        return None
    out_shardings = None
    if keras.distribution.distribution() is not None:
        out_shardings = (None, sam._get_state_sharding_spec())
    first = jax.jit(lambda state, data: _first_passes(sam, state, data))

    def second_passes(
        trainable, optimizer_values, non_trainable, metrics, data, passes
    ):
        state = (trainable, non_trainable, optimizer_values, metrics)
        return train_step(sam, state, data, kind=True, passes=passes)

    # The first program may return some of its inputs as they are (non-trainable
    # values no pass changes): only what it cannot return, the trainable and the
    # optimizer's values, is donated to the second.
    second = jax.jit(second_passes, donate_argnums=(0, 1), out_shardings=out_shardings)
    between = jax.jit(
        lambda state, data: train_step(sam, state, data, kind=False),
        donate_argnums=0,
        out_shardings=out_shardings,
    )
    [position] = [
        i
        for i, v in enumerate(sam.optimizer.variables)
        if v is sam.optimizer.iterations
    ]

    def step(state, data):
        trainable, non_trainable, optimizer_values, metrics = state
        if sam.interval > 1 and int(optimizer_values[position]) % sam.interval:
            return between(state, data)
        passes = first(state, data)
        return second(trainable, optimizer_values, non_trainable, metrics, data, passes)

    return sam._make_function(step)
