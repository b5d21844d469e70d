"""Lookahead: k steps of any optimizer, then a step of the slow weights toward them."""

from __future__ import annotations

import keras
from keras import ops
from keras.saving import register_keras_serializable

from keras_optnotes.checks import check_in_range, check_integer
from keras_optnotes.optimizers.base import (
    _CompiledFunctions,
    _initializer_from,
    _layout,
    _SavedState,
    _shapes,
    _state_creation_scope,
    check_rule,
    numbered_values,
    save_rule,
)


def _tensorflow_eagerly() -> bool:
    """Whether this is the TensorFlow backend running eagerly (not inside a graph)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.executing_eagerly()


@register_keras_serializable(package="keras_optnotes")
class Lookahead(keras.optimizers.Optimizer):
    """Lookahead around any Keras optimizer (Zhang, Lucas, Hinton, Ba 2019).

    Symbols: θ the model's (fast) weights, φ the slow weights (one slot per variable,
    `slow_weights`, set to θ at the first step), t the number of steps
    the inner optimizer has taken (`inner_optimizer.iterations`), k `sync_period`,
    α `slow_step_size`.

        θ ← inner step of θ                     (every step)
        φ ← φ + α (θ − φ) ;  θ ← φ              (when t is a multiple of k)

    The inner optimizer is untouched: its state, learning rate or schedule, weight
    decay, clipping, EMA and gradient accumulation act as they would without the
    wrapper (with gradient accumulation t counts the real updates). `learning_rate`
    and `iterations` read and write the inner optimizer's, so `ReduceLROnPlateau` and
    other callbacks work through the wrapper. Under `mixed_float16` Keras wraps this
    optimizer in a `LossScaleOptimizer`; a step it skips (non-finite gradients) is
    skipped by the inner optimizer and by the slow weights alike.

    `variables` is the slow weights followed by the inner optimizer's variables, so
    saving (`.keras`, `.weights.h5`, `tf.train.Checkpoint`) restores both, and a run
    resumed in the middle of a sync period continues exactly, also through
    `model.compile(...)`, `model.load_weights(...)`, `fit`: slow weights loaded
    before the wrapper is built wait for `build()`, as the state of the rules of
    `keras_optnotes.optimizers` does (the inner optimizer must hold its own state
    the same way: Keras' own optimizers drop state loaded before they are built). The model's weights are the fast
    weights; after a multiple of k steps they equal the slow ones.

    Args:
        optimizer: the inner `keras.optimizers.Optimizer` (this package's or Keras'
            own, e.g. `keras.optimizers.AdamW`), not yet used on other variables.
        sync_period: k, an integer ≥ 1. Defaults to 5.
        slow_step_size: α in (0, 1]. Defaults to 0.5. With k = 1 and α = 1 the
            wrapper is its inner optimizer.
        name: the name of the optimizer. Defaults to `"lookahead"`.

    Returns:
        A `keras.optimizers.Optimizer` to pass to `model.compile`.

    Example:
        >>> model.compile(optimizer=Lookahead(keras.optimizers.AdamW(1e-3)), loss=...)

    References:
        Zhang, Lucas, Hinton, Ba, "Lookahead Optimizer: k steps forward, 1 step back",
        NeurIPS 2019.

    Warning: under a `tf.distribute` strategy with more than one replica this wrapper
    raises when it is built (the synchronization is not written for mirrored
    variables).
    """

    def __init__(self, optimizer, sync_period=5, slow_step_size=0.5, name="lookahead"):
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                "Argument `optimizer` must be a `keras.optimizers.Optimizer` instance. "
                f"Received: optimizer={optimizer!r}"
            )
        sync_period = check_integer("sync_period", sync_period, 1)
        slow_step_size = check_in_range(
            "slow_step_size", slow_step_size, 0.0, 1.0, low_inclusive=False
        )
        # A callable learning rate: the base makes no variable for it (the inner
        # optimizer's rate is the one used, see the `learning_rate` property).
        super().__init__(learning_rate=lambda: 0.0, name=name)
        self.inner_optimizer = optimizer
        self.sync_period = sync_period
        self.slow_step_size = slow_step_size
        self._compiled_functions = _CompiledFunctions()
        self._saved_state = None
        # As in Keras' LossScaleOptimizer, the base's own iteration counter stays in
        # `variables` unused (removing it breaks TF checkpoints): `iterations` is the
        # inner optimizer's.

    # -- delegation to the inner optimizer ----------------------------------------

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        if "inner_optimizer" in self.__dict__:
            self.inner_optimizer.learning_rate = learning_rate
        # else: the base's __init__ setting its placeholder, before `optimizer` is set.

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def loss_scale_factor(self):
        return self.inner_optimizer.loss_scale_factor

    @loss_scale_factor.setter
    def loss_scale_factor(self, value):
        # A `LossScaleOptimizer` around this one sets None here so that gradients are
        # not unscaled twice; that must reach the optimizer that unscales.
        if "inner_optimizer" in self.__dict__:
            self.inner_optimizer.loss_scale_factor = value

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    @property
    def variables(self):
        return self._variables[:] + self.inner_optimizer.variables

    # -- building and stepping ----------------------------------------------------

    def build(self, var_list):
        if self.built:
            return
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            if replicas > 1:
                raise ValueError(
                    "Lookahead does not support a tf.distribute strategy with more "
                    f"than one replica (TensorFlow backend; {replicas} replicas)."
                )
        self.inner_optimizer.build(var_list)
        saved, self._saved_state = self._saved_state, None
        if saved is not None and _shapes(saved.values) != _shapes(var_list):
            raise ValueError(
                f"Cannot load the state of optimizer '{self.name}' (Lookahead): the "
                f"saved slow weights are {_layout(_shapes(saved.values))}; the "
                f"optimizer is built for {_layout(_shapes(var_list))}. The state was "
                "saved from another model."
            )
        self.slow_weights = []
        for i, variable in enumerate(var_list):
            initializer = (
                "zeros" if saved is None else _initializer_from(saved.values[i])
            )
            with _state_creation_scope():  # eager, also during a trace
                slow = self.add_variable_from_reference(
                    variable, name="slow", initializer=initializer
                )
            if saved is None:
                slow.assign(ops.copy(variable))  # own buffer: JAX donates both
            self.slow_weights.append(slow)
        super().build(var_list)

    def _synchronized(self, slow_values, fast_values):
        """The slow weights after a synchronization: φ + α (θ − φ)."""
        if self.slow_step_size == 1.0:
            # φ ← θ exactly, not up to the rounding of φ + (θ − φ).
            return list(fast_values)
        return [
            ops.add(
                slow,
                ops.multiply(
                    ops.subtract(fast, slow),
                    ops.convert_to_tensor(self.slow_step_size, dtype=slow.dtype),
                ),
            )
            for slow, fast in zip(slow_values, fast_values)
        ]

    def _inner_count(self):
        # Repeated at the same count (a step the inner optimizer skipped, a
        # micro-step of gradient accumulation) a synchronization or the start
        # changes nothing, since then θ = φ already, or θ has not moved.
        return self.inner_optimizer.iterations

    def _is_sync_step(self):
        return ops.equal(ops.mod(self._inner_count(), self.sync_period), 0)

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            if trainable_variables is None:
                raise ValueError(
                    "Lookahead.apply: pass `trainable_variables` on the first call, or "
                    "build the optimizer first."
                )
            trainable_variables = list(trainable_variables)
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
        if keras.backend.backend() == "jax":
            # A branch of jax.lax.cond must be pure: run the stateless step on the
            # variables' values and assign the results.
            if trainable_variables is not None and len(trainable_variables) != len(
                self._trainable_variables
            ):
                raise ValueError(
                    "Lookahead.apply on the JAX backend updates all the variables it "
                    f"was built with ({len(self._trainable_variables)}); received "
                    f"{len(trainable_variables)}."
                )
            fast, state = self.stateless_apply(
                [v.value for v in self.variables],
                grads,
                [v.value for v in self._trainable_variables],
            )
            for variable, value in zip(self._trainable_variables, fast):
                variable.assign(value)
            for variable, value in zip(self.variables, state):
                variable.assign(value)
            return
        if trainable_variables is None:
            slow_weights, fast_weights = self.slow_weights, self._trainable_variables
        else:
            indices = [self._get_variable_index(v) for v in trainable_variables]
            slow_weights = [self.slow_weights[i] for i in indices]
            fast_weights = list(trainable_variables)

        # TensorFlow and PyTorch: assign only when the condition holds.
        def start():
            # φ starts at θ as it is at the first step, not when built: weights
            # loaded after `build()` (`load_weights`, `load_model`) count.
            for slow, fast in zip(slow_weights, fast_weights):
                slow.assign(fast)

        def synchronize():
            for slow, value in zip(
                slow_weights, self._synchronized(slow_weights, fast_weights)
            ):
                slow.assign(value)
            for fast, slow in zip(fast_weights, slow_weights):
                fast.assign(slow)

        if not _tensorflow_eagerly():
            # In a graph (as in `fit`) and on PyTorch: the conditions as ops.
            ops.cond(ops.equal(self._inner_count(), 0), start, lambda: None)
            self.inner_optimizer.apply(grads, trainable_variables)
            ops.cond(self._is_sync_step(), synchronize, lambda: None)
            return
        # Eager TensorFlow: the counter read on the host, each assignment one XLA call.
        # Op by op the synchronization of 40 variables took 25 Momentum steps; with
        # the condition inside the XLA call, every apply() cost 1.9 Momentum steps
        # (benchmarks/remedies.py).
        key = tuple(id(v) for v in fast_weights)
        if int(ops.convert_to_numpy(self._inner_count())) == 0:
            self._compiled_functions.get(("start", key), start)()
        self.inner_optimizer.apply(grads, trainable_variables)
        if int(ops.convert_to_numpy(self._inner_count())) % self.sync_period == 0:
            self._compiled_functions.get(("synchronize", key), synchronize)()

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """The JAX trainer's step: the inner optimizer's own stateless step between
        the two conditions of `apply`, on values (so that a `LossScaleOptimizer`
        inside works too)."""
        if not self.built:
            raise ValueError(
                "To call `stateless_apply`, Lookahead must be built: call "
                "`optimizer.build(trainable_variables)` first."
            )
        count = len(self._variables)
        own_values = [ops.convert_to_tensor(v) for v in optimizer_variables[:count]]
        inner_values = list(optimizer_variables[count:])
        fast_values = [ops.convert_to_tensor(v) for v in trainable_variables]
        # The slow weights are the last of this optimizer's own variables.
        first_slow = count - len(self.slow_weights)
        slow_values = own_values[first_slow:]

        def inner_condition(values, condition):
            mapping = list(zip(self.inner_optimizer.variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return ops.convert_to_tensor(condition())

        slow_values = ops.cond(
            inner_condition(inner_values, lambda: ops.equal(self._inner_count(), 0)),
            lambda: list(fast_values),
            lambda: list(slow_values),
        )
        fast_values, inner_values = self.inner_optimizer.stateless_apply(
            inner_values, grads, fast_values
        )

        def synchronized():
            new = self._synchronized(slow_values, fast_values)
            return new, list(new)

        slow_values, fast_values = ops.cond(
            inner_condition(inner_values, self._is_sync_step),
            synchronized,
            lambda: (list(slow_values), list(fast_values)),
        )
        return (
            list(fast_values),
            own_values[:first_slow] + list(slow_values) + list(inner_values),
        )

    # -- saving ---------------------------------------------------------------------

    def save_own_variables(self, store):
        """Saves this optimizer's own variables and that Lookahead wrote them; Keras'
        saving visits the inner optimizer (the attribute `inner_optimizer`) and saves
        its state beside."""
        for i, variable in enumerate(self._variables):
            store[str(i)] = keras.ops.convert_to_numpy(variable)
        save_rule(store, self)

    def load_own_variables(self, store):
        """Restores the slow weights; another optimizer's state or a layout mismatch
        is an error, not a warning. Before `build()` the slow weights wait for it."""
        check_rule(store, self)
        values = numbered_values(store)
        if not values:
            raise ValueError(
                f"Cannot load the state of optimizer '{self.name}' (Lookahead): the "
                "saved state is empty (saved from a model without this optimizer)."
            )
        # The first is the unused iteration counter; the slow weights follow.
        self._variables[0].assign(values[0])
        if len(values) == 1:
            # Saved before it was built: no slow weight existed yet. They start at
            # the fast weights at the first step (see `apply`).
            return
        if not self.built:
            self._saved_state = _SavedState(values[1:])
            return
        if _shapes(values) != _shapes(self._variables):
            raise ValueError(
                f"Cannot load the state of optimizer '{self.name}' (Lookahead): the "
                f"saved state has {_layout(_shapes(values))}; the optimizer built has "
                f"{_layout(_shapes(self._variables))}."
            )
        for variable, value in zip(self._variables[1:], values[1:]):
            variable.assign(value)

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "sync_period": self.sync_period,
            "slow_step_size": self.slow_step_size,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        optimizer = keras.saving.deserialize_keras_object(
            config.pop("optimizer"), custom_objects=custom_objects
        )
        return cls(optimizer, **config)
