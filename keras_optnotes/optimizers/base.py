"""The shared base of the notes' update rules: argument checks and the XLA-fused step.

Every rule of `keras_optnotes.optimizers` subclasses `Optimizer` below, which is itself a
`keras.optimizers.Optimizer`. It adds three things to Keras' base class:

- hyper-parameters are checked when the optimizer is constructed, and a bad value raises
  `ValueError` naming the argument, the value received and the range accepted (Keras
  accepts most nonsense silently);
- `jit_compile=True` (the default) runs the update of all variables of one `apply()` as
  XLA-compiled calls on the TensorFlow backend (one call per 32 MiB of variables), also
  when `apply()` is called eagerly in a custom training loop or inside a `tf.function`
  that is not itself compiled;
- loading saved optimizer state whose layout does not match is an error, where Keras only
  warns and trains on from zeroed state.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras
from keras import ops

from keras_optnotes.checks import check_bool
from keras_optnotes.optimizers.checks import check_base_keywords

# The keywords of Keras' base optimizer that every rule takes and forwards unchanged.
BASE_KEYWORDS = (
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
    "name",
)


def check_learning_rate(learning_rate: Any) -> Any:
    """Returns `learning_rate` as a Python float, or a schedule or callable unchanged.

    Raises:
        ValueError: when it is a number that is not finite or not positive, or neither
            a number, a `LearningRateSchedule` nor a callable.
    """
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return learning_rate
    if callable(learning_rate) and not isinstance(learning_rate, numbers.Number):
        return learning_rate
    if isinstance(learning_rate, numbers.Real) and not isinstance(learning_rate, bool):
        value = float(learning_rate)
        if math.isfinite(value) and value > 0:
            return value
    raise ValueError(
        "Argument `learning_rate` must be a finite number > 0, a "
        "`keras.optimizers.schedules.LearningRateSchedule` or a callable returning the "
        f"learning rate. Received: learning_rate={learning_rate!r}"
    )


def _inside_xla_compilation() -> bool:
    """Whether the code being traced now is part of an XLA-compiled `tf.function`."""
    import tensorflow as tf

    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TF without this internal
        return False
    return control_flow_util.GraphOrParentsInXlaContext(
        tf.compat.v1.get_default_graph()
    )


# The most bytes of variables updated by one XLA call of the fused path.
FUSED_GROUP_BYTES = 32 * 2**20


def _dtype_size(dtype) -> int:
    import numpy as np

    name = keras.backend.standardize_dtype(dtype)
    return 2 if name == "bfloat16" else np.dtype(name).itemsize  # NumPy has no bfloat16


class _FusedApplyCache:
    """Holds the compiled update functions out of sight of Keras' and TF's trackers."""

    def __init__(self):
        self.functions = {}


class Optimizer(keras.optimizers.Optimizer):
    """Base class of the notes' update rules.

    Subclasses implement `build()` and `update_step()` as in Keras, call
    `scalar(value, variable)` for every hyper-parameter they use in an update (so that
    float64 variables get float64 constants, never a float32 detour), and list their own
    hyper-parameters in `get_config()`.

    Args:
        learning_rate: a float > 0, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a callable taking no argument and returning the learning rate.
        jit_compile: on the TensorFlow backend, run the update of all variables of
            each `apply()` as XLA-compiled calls, one per 32 MiB of variables (see
            `uses_fused_apply`). `False` runs Keras' plain per-variable path. Both
            give the same numbers to float rounding. Under a
            `tf.distribute` strategy with more than one replica the plain path is taken
            whatever this says: XLA cannot reach variables that live on other devices
            (a known Keras/TensorFlow limit). On the JAX backend Keras compiles the
            whole train step already and this flag has no effect.
        **kwargs: the keywords of `keras.optimizers.Optimizer` (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).
    """

    def __init__(self, learning_rate, *, jit_compile: bool = True, **kwargs):
        check_base_keywords(kwargs)
        super().__init__(learning_rate=check_learning_rate(learning_rate), **kwargs)
        self.jit_compile = check_bool("jit_compile", jit_compile)
        self._fused = _FusedApplyCache()
        # Variables that exist before `build()` (iterations, the learning rate).
        self._unbuilt_variable_count = len(self.variables)

    # -- constants -----------------------------------------------------------------

    @staticmethod
    def scalar(value, variable):
        """`value` as a tensor of `variable`'s dtype, converted without a float32 detour."""
        if ops.is_tensor(value) or isinstance(value, keras.Variable):
            return ops.cast(value, variable.dtype)
        return ops.convert_to_tensor(value, dtype=variable.dtype)

    def update_moving_average(self, average, value, decay):
        """average ← decay·average + (1 − decay)·value, with the constant in the slot's
        dtype (1 − decay computed in Python's float64).

        Written as the in-place average += (1 − decay)·(value − average), as Keras
        does: assigning a freshly computed tensor instead raised the peak memory of
        the plain (`jit_compile=False`) path by 23 % (benchmarks/fit_and_memory.py).
        """
        self.assign_add(
            average,
            ops.multiply(
                ops.subtract(value, average), self.scalar(1.0 - decay, average)
            ),
        )

    def divide_by_root(self, numerator, accumulator, epsilon, epsilon_inside_sqrt):
        """numerator / √(accumulator + ε) when `epsilon_inside_sqrt` (the notes' form),
        else numerator / (√accumulator + ε) (the original papers' and torch.optim's)."""
        epsilon = self.scalar(epsilon, accumulator)
        if epsilon_inside_sqrt:
            return ops.divide(numerator, ops.sqrt(ops.add(accumulator, epsilon)))
        return ops.divide(numerator, ops.add(ops.sqrt(accumulator), epsilon))

    @staticmethod
    def sparse_rows(gradient, variable):
        """(indices, values) of a sparse gradient, values in `variable`'s dtype; else None.

        Indices may repeat; a scatter-add of the values equals the dense gradient.
        """
        if keras.backend.backend() != "tensorflow":
            return None
        import tensorflow as tf

        if not isinstance(gradient, tf.IndexedSlices):
            return None
        return gradient.indices, ops.cast(gradient.values, variable.dtype)

    @staticmethod
    def indexed_slices(values, indices, variable):
        """Rows `values` at `indices` of a tensor shaped like `variable`, for a scatter."""
        import tensorflow as tf

        return tf.IndexedSlices(values, indices, dense_shape=tuple(variable.shape))

    def dense(self, gradient, variable):
        """The gradient as a dense tensor of `variable`'s dtype.

        Sparse gradients (`tf.IndexedSlices`, from an `Embedding` layer) are made dense
        for the rules that decay or rescale every row at every step (momentum, the
        moving averages of RMSprop, Adadelta and Adam), where a sparse update would be
        a different rule. Adagrad would allow a sparse update, but merging repeated
        indices needs `tf.unique`, which XLA does not compile; it takes the dense path.
        """
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if isinstance(gradient, tf.IndexedSlices):
                gradient = tf.convert_to_tensor(gradient)
        return ops.cast(gradient, variable.dtype)

    # -- the fused step ------------------------------------------------------------

    @property
    def uses_fused_apply(self) -> bool:
        """Whether `apply()` called here and now fuses the update into XLA calls.

        True when `jit_compile=True`, the backend is TensorFlow and no `tf.distribute`
        strategy with more than one replica is in scope (neither now nor when the
        optimizer was made).
        """
        if not self.jit_compile or keras.backend.backend() != "tensorflow":
            return False
        import tensorflow as tf

        strategies = [tf.distribute.get_strategy()]
        strategies.append(getattr(self, "_distribution_strategy", strategies[0]))
        return all(s.num_replicas_in_sync == 1 for s in strategies)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """Runs `update_step` over all variables as a few XLA-compiled calls.

        Keras' `apply()` around it (filtering, loss-scale, clipping, decoupled weight
        decay, gradient accumulation, EMA, the iteration counter) is unchanged. The
        variables are cut into consecutive groups of at most `FUSED_GROUP_BYTES`, one
        compiled function each, traced once: XLA writes each updated variable and slot
        to a fresh buffer before it replaces the old one, so one call for everything
        would raise the peak memory by a copy of the whole model and its slots.
        """
        if not self.uses_fused_apply or _inside_xla_compilation():
            # Inside a function that XLA compiles already, a nested compiled function
            # would be a separate XLA call (TF never inlines it): slower, not faster.
            return super()._backend_update_step(
                grads, trainable_variables, learning_rate
            )
        import tensorflow as tf

        if isinstance(learning_rate, keras.Variable):
            learning_rate = learning_rate.value
        learning_rate = tf.convert_to_tensor(learning_rate)
        for start, stop in self._fused_groups(trainable_variables):
            variables = trainable_variables[start:stop]
            function = self._fused_function(variables)
            function(grads[start:stop], learning_rate)

    def _fused_groups(self, variables):
        """(start, stop) of consecutive groups of at most FUSED_GROUP_BYTES each."""
        groups, start, size = [], 0, 0
        for i, variable in enumerate(variables):
            nbytes = math.prod(variable.shape) * _dtype_size(variable.dtype)
            if i > start and size + nbytes > FUSED_GROUP_BYTES:
                groups.append((start, i))
                start, size = i, 0
            size += nbytes
        groups.append((start, len(variables)))
        return groups

    def _fused_function(self, variables):
        import tensorflow as tf

        key = tuple(self._var_key(v) for v in variables)
        function = self._fused.functions.get(key)
        if function is None:

            def fused_update(grads, learning_rate):
                for gradient, variable in zip(grads, variables):
                    self.update_step(gradient, variable, learning_rate)

            function = tf.function(fused_update, jit_compile=True, autograph=False)
            self._fused.functions[key] = function
        return function

    # -- decoupled weight decay ---------------------------------------------------------

    def _apply_weight_decay(self, variables):
        """θ ← θ − η λ θ, as Keras does it, but with λ converted straight to the
        variable's dtype (Keras casts the Python float through float32 first)."""
        if self.weight_decay is None:
            return

        def decay(variable):
            if self._use_weight_decay(variable):
                lr = self.scalar(self.learning_rate, variable)
                wd = self.scalar(self.weight_decay, variable)
                variable.assign_sub(variable * wd * lr)

        if keras.backend.backend() != "tensorflow":
            for variable in variables:
                decay(variable)
            return
        import tensorflow as tf

        def distributed_decay(distribution, variables):
            for variable in variables:
                if isinstance(variable, keras.Variable):
                    variable = variable.value
                distribution.extended.update(variable, decay, group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            distributed_decay, self._distribution_strategy, variables
        )

    # -- state ---------------------------------------------------------------------

    def load_own_variables(self, store):
        """Restores the optimizer's state; a layout mismatch is an error, not a warning."""
        saved = len(store.keys())
        variables = self.variables
        if saved == self._unbuilt_variable_count < len(variables):
            # Saved before its first step: no slot had state yet, so the slots just
            # built (all at their initial value) are exactly what was saved.
            variables = variables[:saved]
        elif saved != len(variables):
            raise ValueError(
                f"Cannot load the state of optimizer '{self.name}' "
                f"({type(self).__name__}): it has {len(self.variables)} variables but "
                f"the saved state has {saved}. "
                + (
                    "The optimizer is not built yet: build it on the model's "
                    "trainable variables first."
                    if not self.built
                    else "The saved optimizer was built with other arguments or on "
                    "another model."
                )
            )
        for i, variable in enumerate(variables):
            value = store[str(i)]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Cannot load the state of optimizer '{self.name}': variable {i} "
                    f"({variable.path}) has shape {tuple(variable.shape)} but the saved "
                    f"value has shape {tuple(value.shape)}."
                )
            variable.assign(value)

    def get_config(self):
        config = super().get_config()
        config["jit_compile"] = self.jit_compile
        return config
