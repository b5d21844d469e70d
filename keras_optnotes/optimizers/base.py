"""The shared base of the notes' update rules: argument checks, the XLA-fused step, state.

Every rule of `keras_optnotes.optimizers` subclasses `Optimizer` below, which is itself a
`keras.optimizers.Optimizer`. It adds to Keras' base class:

- hyper-parameters are checked whenever they are assigned, in `__init__` and afterwards
  (`optimizer.beta_1 = 5.0`), from one table of checks per rule (`HYPERPARAMETERS`),
  and a bad value raises `ValueError` naming the argument, the value received and the
  range accepted (Keras accepts most nonsense silently);
- `jit_compile=True` (the default) runs the update of all variables of one `apply()` as
  XLA-compiled calls on the TensorFlow backend (one call per 32 MiB of variables), also
  when `apply()` is called eagerly in a custom training loop or inside a `tf.function`
  that is not itself compiled;
- saved state loaded before the optimizer is built (`model.compile(...)` then
  `model.load_weights(...)`) is kept and given to the slots when they are built, so
  training resumes exactly, where Keras warns and drops it;
- loading saved state whose layout does not match is an error naming both layouts,
  where Keras only warns and trains on from zeroed state;
- saved state records which rule wrote it (`RULE_KEY`), and another rule's state is
  an error naming both rules, even when the layouts agree (Adadelta's two
  accumulators would fill Adam's m and v).
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import warnings
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_optnotes.checks import check_bool
from keras_optnotes.optimizers.checks import BASE_CHECKS, Check, check_learning_rate

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


def _state_creation_scope():
    """Where a rule creates its state variables: on TensorFlow, inside a function being
    traced and under no `tf.distribute` strategy, the eager context (`tf.init_scope`).

    Without a strategy, Keras' `fit` builds the optimizer lazily, inside the first
    trace of the train function; a `tf.Variable` created there gets its initializer
    wrapped in a `tf.cond`, which costs about 40 ms per variable on a CPU (an Adam of
    a six-layer network: about 0.6 s per fresh model). Created eagerly, as Keras
    itself creates a layer's deferred variables, each costs about a millisecond and
    holds the same initial value. Under a strategy, Keras builds the optimizer before
    any trace, and variables keep the strategy's own creation path.
    """
    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    if tf.executing_eagerly() or tf.distribute.has_strategy():
        return contextlib.nullcontext()
    return tf.init_scope()


def _initializer_from(value):
    """A Keras initializer that gives `value` (a saved array): state restored as the
    variable's initial value, not by an assignment, since `build` may run inside the
    first trace of a `tf.function`, whose later traces skip it."""

    def initializer(shape, dtype=None):
        return ops.convert_to_tensor(value, dtype=dtype)

    return initializer


# The most bytes of variables updated by one XLA call of the fused path.
FUSED_GROUP_BYTES = 32 * 2**20


def _dtype_size(dtype) -> int:
    name = keras.backend.standardize_dtype(dtype)
    return 2 if name == "bfloat16" else np.dtype(name).itemsize  # NumPy has no bfloat16


class _CompiledFunctions:
    """Holds compiled functions (the fused update's, Lookahead's) out of sight of
    Keras' and TensorFlow's trackers."""

    def __init__(self):
        self.functions = {}

    def get(self, key, function):
        """`function` as an XLA-compiled `tf.function`, made once per `key`."""
        compiled = self.functions.get(key)
        if compiled is None:
            import tensorflow as tf

            compiled = tf.function(function, jit_compile=True, autograph=False)
            self.functions[key] = compiled
        return compiled


class _SavedState:
    """Saved values that wait for the slots `build()` will create (kept out of sight of
    the trackers, like `_CompiledFunctions`)."""

    def __init__(self, values: list[np.ndarray]):
        self.values = values
        self.building = False


# The entry of an optimizer's saved state that names the rule which wrote it, beside
# Keras' numbered entries "0", "1", … of the variables. It is stored as the UTF-8
# bytes of the rule's registered name ("keras_optnotes>Adam") in a uint8 array: the
# weight stores of `.weights.h5` and `.keras` files hold arrays only.
RULE_KEY = "rule"


def rule_name(optimizer) -> str:
    """The registered name of `optimizer`'s class, e.g. `"keras_optnotes>Adam"`."""
    return keras.saving.get_registered_name(type(optimizer))


def save_rule(store, optimizer) -> None:
    """Records in `store` which rule writes this state (see `RULE_KEY`)."""
    store[RULE_KEY] = np.frombuffer(rule_name(optimizer).encode("utf-8"), np.uint8)


def numbered_values(store) -> list[np.ndarray]:
    """The saved variables "0", "1", … of `store`, in order (the rule record left out)."""
    count = sum(1 for key in store.keys() if key != RULE_KEY)
    return [np.asarray(store[str(i)]) for i in range(count)]


def check_rule(store, optimizer) -> None:
    """Raises `ValueError` when `store` was written by another rule than `optimizer`'s.

    State without the record (written by Keras' own optimizers, or by this package
    before the record existed) cannot be told apart by its writer: it is accepted,
    with a warning, and only its layout is checked.
    """
    mine = rule_name(optimizer)
    if RULE_KEY not in store.keys():
        if len(store.keys()):
            warnings.warn(
                f"The saved state loaded into optimizer '{optimizer.name}' ({mine}) "
                "does not record which optimizer wrote it (written by a Keras "
                "optimizer or by an earlier keras-optnotes); only its layout is "
                "checked.",
                stacklevel=3,
            )
        return
    saved = bytes(np.asarray(store[RULE_KEY], np.uint8)).decode("utf-8")
    if saved != mine:
        raise ValueError(
            f"Cannot load the state of optimizer '{optimizer.name}' ({mine}): the "
            f"saved state was written by {saved}. Compile the model with that "
            "optimizer to resume from this state."
        )


def _shapes(arrays) -> list[tuple[int, ...]]:
    return [tuple(int(n) for n in a.shape) for a in arrays]


def _layout(shapes: list[tuple[int, ...]], most: int = 16) -> str:
    """`n variables of shapes (), (), (4, 3), …` for an error message."""
    shown = ", ".join(str(s) for s in shapes[:most])
    more = f", … ({len(shapes) - most} more)" if len(shapes) > most else ""
    return f"{len(shapes)} variables of shapes {shown}{more}"


def _restoring_saved_state(build):
    """Wraps a rule's `build` so that saved state loaded before it is checked against
    what it built (once the outermost `build` returns) and then dropped."""

    @functools.wraps(build)
    def build_then_check(self, variables):
        saved = self._saved_state
        if saved is None or saved.building:
            return build(self, variables)
        saved.building = True
        try:
            result = build(self, variables)
        finally:
            saved.building = False
            self._saved_state = None
        self._check_layout(saved.values, built=True)
        return result

    return build_then_check


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

    # The rule's own hyper-parameters: name -> check(name, value). Every assignment of
    # one of these attributes is checked (in `__init__` and later), and `get_config`
    # lists them. Subclasses add theirs; a subclass of a rule inherits its table.
    HYPERPARAMETERS: ClassVar[dict[str, Check]] = {}
    # Checked on assignment too, but in the config by Keras' own `get_config`.
    _CHECKS: ClassVar[dict[str, Check]] = {**BASE_CHECKS, "jit_compile": check_bool}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        table = {}
        for klass in reversed(cls.__mro__):
            table.update(klass.__dict__.get("HYPERPARAMETERS", {}))
        cls.HYPERPARAMETERS = table
        cls._CHECKS = {**Optimizer._CHECKS, **table}
        if "build" in cls.__dict__:
            cls.build = _restoring_saved_state(cls.__dict__["build"])

    def __init__(self, learning_rate, *, jit_compile: bool = True, **kwargs):
        super().__init__(
            learning_rate=check_learning_rate("learning_rate", learning_rate), **kwargs
        )
        self._saved_state = None
        self.jit_compile = jit_compile
        self._fused = _CompiledFunctions()
        # Variables that exist before `build()` (iterations, the learning rate).
        self._unbuilt_variable_count = len(self.variables)

    def __setattr__(self, name, value):
        check = self._CHECKS.get(name)
        if check is not None:
            value = check(name, value)
            if name in self.HYPERPARAMETERS and hasattr(self, "_fused"):
                # The fused functions hold the hyper-parameters as constants: retrace.
                # (A `fit` that is running has traced them as constants too, as with
                # Keras' own optimizers; only the learning rate is a variable.)
                self._fused.functions.clear()
        super().__setattr__(name, value)

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
        elif isinstance(learning_rate, numbers.Real):
            # A callable's Python number: float64, so that float64 variables get it
            # exactly, as on the plain path (tf.convert_to_tensor would make float32).
            learning_rate = tf.constant(learning_rate, tf.float64)
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
        def fused_update(grads, learning_rate):
            for gradient, variable in zip(grads, variables):
                self.update_step(gradient, variable, learning_rate)

        return self._fused.get(tuple(self._var_key(v) for v in variables), fused_update)

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

    def build(self, variables):
        """Keras' `build`; a rule without slots (`GradientDescent`) still checks that
        saved state loaded before it was built has no slots either."""
        super().build(variables)

    def save_own_variables(self, store):
        """Saves the variables as Keras does ("0", "1", …) and which rule wrote them."""
        super().save_own_variables(store)
        save_rule(store, self)

    def load_own_variables(self, store):
        """Restores the optimizer's state; another rule's state or a layout mismatch is
        an error, not a warning.

        Before `build()` (`model.compile(...)` then `model.load_weights(...)`) the
        iteration counter and learning rate are restored at once and the slots' saved
        values wait: each slot `build()` creates starts at its saved value, and what
        was built is checked against what was saved (count and shapes).
        """
        check_rule(store, self)
        values = numbered_values(store)
        variables = self.variables
        if not self.built and len(values) > len(variables):
            self._check_layout(values[: len(variables)], built=False)
            self._saved_state = _SavedState(values)
            values = values[: len(variables)]
        elif len(values) == self._unbuilt_variable_count < len(variables):
            # Saved before its first step: no slot had state yet, so the slots just
            # built (all at their initial value) are exactly what was saved.
            variables = variables[: len(values)]
        else:
            self._check_layout(values, built=self.built)
        for variable, value in zip(variables, values):
            variable.assign(value)

    def _check_layout(self, values, built: bool) -> None:
        """Raises when the saved `values` do not fit `self.variables` one to one."""
        saved, have = _shapes(values), _shapes(self.variables)
        if saved == have:
            return
        state = "built has" if built else "not built yet has"
        message = (
            f"Cannot load the state of optimizer '{self.name}' "
            f"({type(self).__name__}): the saved state has {_layout(saved)}; the "
            f"optimizer {state} {_layout(have)}."
        )
        if len(saved) == len(have):
            i = next(i for i, (a, b) in enumerate(zip(saved, have)) if a != b)
            message += (
                f" variable {i} ({self.variables[i].path}) has shape {have[i]} but the "
                f"saved value has shape {saved[i]}."
            )
        raise ValueError(
            message + " The state was saved from another optimizer (another rule, or "
            "arguments such as `amsgrad`) or another model."
        )

    def add_variable(self, shape, initializer="zeros", dtype=None, **kwargs):
        """Keras' `add_variable`; while saved state waits (see `load_own_variables`),
        the new variable starts at its saved value when the shapes agree. On
        TensorFlow, outside a `tf.distribute` strategy, it is created in the eager
        context also while a function is being traced (`tf.init_scope`), as Keras
        creates a layer's deferred variables."""
        saved = self._saved_state
        index = len(self._variables)
        if saved is not None and index < len(saved.values):
            value = saved.values[index]
            if tuple(value.shape) == tuple(int(n) for n in shape):
                initializer = _initializer_from(value)
        with _state_creation_scope():
            return super().add_variable(
                shape, initializer=initializer, dtype=dtype, **kwargs
            )

    def get_config(self):
        config = super().get_config()
        config["jit_compile"] = self.jit_compile
        config.update({name: getattr(self, name) for name in self.HYPERPARAMETERS})
        return config


# The base's own `build` too: a rule without slots of its own checks saved state.
Optimizer.build = _restoring_saved_state(Optimizer.build)
