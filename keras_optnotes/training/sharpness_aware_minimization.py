"""Sharpness-aware minimization (SAM) and its adaptive variant (ASAM) as a Keras model
wrapper with its own train step.

The perturbation and the two passes are written once here, in `keras.ops`, as
functions of the variables' *values* (`stateless_call`); each backend contributes only
its gradient function and the way its trainer holds state, in `_sam_<backend>.py`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import keras
from keras import ops

from keras_optnotes.checks import (
    check_bool,
    check_in_range,
    check_integer,
    check_positive,
)

_BACKENDS = ("tensorflow", "jax", "torch")


def sharpness_aware_perturbation(
    gradients: Sequence[Any],
    weights: Sequence[Any],
    rho: float,
    adaptive: bool = False,
    eta: float = 0.01,
) -> list[Any]:
    """The weight perturbation ε of SAM (or ASAM), one tensor per weight.

    SAM: ε = ρ g / ‖g‖₂. ASAM: T = |w| + η, ε = ρ T² g / ‖T g‖₂. The norm is global,
    over all tensors together. ε = 0 when the norm is 0 (a zero gradient gives no
    perturbation, never NaN).
    """
    if adaptive:
        # convert_to_tensor, not cast: TensorFlow's cast of a Python float goes
        # through float32 (0.01 would become 0.01 - 2.2e-10 in float64).
        scales = [ops.abs(w) + ops.convert_to_tensor(eta, w.dtype) for w in weights]
        scaled = [t * g for t, g in zip(scales, gradients)]
        directions = [t * s for t, s in zip(scales, scaled)]
    else:
        scaled = directions = list(gradients)
    dtype = _accumulation_dtype(scaled)
    norm = ops.sqrt(sum(ops.sum(ops.square(ops.cast(s, dtype))) for s in scaled))
    factor = rho / ops.where(norm > 0, norm, ops.ones_like(norm))
    return [ops.cast(factor, d.dtype) * d for d in directions]


def _accumulation_dtype(tensors: Sequence[Any]) -> str:
    # At least float32, so that half-precision gradients cannot overflow a norm.
    dtypes = {keras.backend.standardize_dtype(t.dtype) for t in tensors}
    return "float64" if "float64" in dtypes else "float32"


def _global_dot(a: Sequence[Any], b: Sequence[Any]) -> Any:
    """Σ over all tensors of Σ aᵢ bᵢ, in float32 at least (float64 if any is)."""
    dtype = _accumulation_dtype([*a, *b])
    return sum(
        ops.sum(ops.multiply(ops.cast(s, dtype), ops.cast(t, dtype)))
        for s, t in zip(a, b)
    )


def looksam_direction(gradients: Sequence[Any], sam_gradients: Sequence[Any]) -> list:
    """LookSAM's g_v = g_s − (g·g_s / ‖g‖²) g: the part of the SAM gradient g_s
    orthogonal to the plain gradient g (global dot product and norm, over all tensors
    together). g_v = g_s when g = 0."""
    squared = _global_dot(gradients, gradients)
    dot = _global_dot(gradients, sam_gradients)
    coefficient = ops.where(squared > 0, dot, ops.zeros_like(dot)) / ops.where(
        squared > 0, squared, ops.ones_like(squared)
    )
    return [
        s - ops.cast(coefficient, g.dtype) * g for g, s in zip(gradients, sam_gradients)
    ]


def looksam_gradient(
    gradients: Sequence[Any], directions: Sequence[Any], alpha: float
) -> list:
    """LookSAM's gradient between SAM steps: g + α (‖g‖ / ‖g_v‖) g_v, global norms;
    g itself when g_v = 0 (never NaN from a zero g_v)."""
    gradient_norm = ops.sqrt(_global_dot(gradients, gradients))
    direction_norm = ops.sqrt(_global_dot(directions, directions))
    factor = (alpha * gradient_norm) / ops.where(
        direction_norm > 0, direction_norm, ops.ones_like(direction_norm)
    )
    return [
        g + ops.cast(factor, g.dtype) * ops.cast(v, g.dtype)
        for g, v in zip(gradients, directions)
    ]


def all_finite(tensors: Sequence[Any]) -> Any:
    """A scalar boolean: every element of every tensor is finite."""
    return ops.all(ops.stack([ops.all(ops.isfinite(t)) for t in tensors]))


class SamGradients(NamedTuple):
    """What one step computes before the optimizer applies it."""

    gradients: list  # what the optimizer applies (of the *scaled* loss)
    non_trainable_values: list  # after the unperturbed pass(es) only
    metrics_values: list  # after the unperturbed pass(es) only
    loss: Any  # unscaled loss of the unperturbed pass(es)
    y_pred: Any  # predictions of the unperturbed pass(es)


class UnperturbedPasses(NamedTuple):
    """The first half of a SAM step: one unperturbed pass per split."""

    gradients: list  # per split, ∇L(w) of the split's *scaled* loss
    starts: list  # per split, the non-trainable values its passes start from
    non_trainable_values: list  # after the last split
    metrics_values: list  # after the last split
    loss: Any  # unscaled, the splits' losses weighted by their shares
    y_pred: Any  # all splits' predictions, in batch order


def _batch_size(x: Any) -> Any:
    return ops.shape(next(t for t in keras.tree.flatten(x) if t is not None))[0]


class _Split(NamedTuple):
    data: tuple  # (x, y, sample_weight) of this split
    share: Any  # its size over the batch size
    nonempty: Any  # None when known to be non-empty, else a scalar boolean tensor


def _split(data: tuple, num_splits: int) -> list[_Split]:
    """`data` (x, y, sample_weight) cut along axis 0 into `num_splits` near-equal
    parts, rows ⌊iB/k⌋ … ⌊(i+1)B/k⌋ − 1 for split i.

    With a batch size B known when tracing (JAX, PyTorch, TensorFlow's full batches)
    empty parts (B < k) are left out; with B known only at run time (TensorFlow's last
    partial batch) every part comes with a `nonempty` flag to mask it by.
    """
    batch = _batch_size(data[0])
    bounds = [(i * batch) // num_splits for i in range(num_splits + 1)]
    static = isinstance(batch, int)
    parts = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if static and stop == start:
            continue
        part = keras.tree.map_structure(
            lambda t, a=start, b=stop: None if t is None else t[a:b], data
        )
        if static:
            parts.append(_Split(part, (stop - start) / batch, None))
        else:
            share = ops.cast(stop - start, "float64") / ops.cast(batch, "float64")
            parts.append(_Split(part, share, stop > start))
    return parts


def _masked(flag: Any, new: Sequence[Any], old: Sequence[Any]) -> list:
    """`new` where `flag` (a scalar boolean tensor) holds, else `old`; `flag=None`
    is always."""
    if flag is None:
        return list(new)
    return [ops.where(flag, n, o) for n, o in zip(new, old)]


def _concatenate(parts: Sequence[Any]) -> Any:
    return keras.tree.map_structure(
        lambda *tensors: ops.concatenate(tensors, axis=0), *parts
    )


def _scaled_loss(sam, x, y, sample_weight, loss_scale, non_trainable, metrics):
    """`f(trainable) -> (scaled loss, aux)`: one training-mode pass, stateless."""

    def loss_function(trainable):
        y_pred, new_non_trainable, losses = sam.stateless_call(
            trainable, non_trainable, x, return_losses=True, training=True
        )
        # As Keras' own JAX trainer: `compute_loss` adds `self.losses`, which must be
        # those of this pass (the regularizers of these weights).
        sam._losses_override = list(losses)
        try:
            loss, (_, new_non_trainable, new_metrics) = sam.stateless_compute_loss(
                trainable,
                new_non_trainable,
                metrics,
                x=x,
                y=y,
                y_pred=y_pred,
                sample_weight=sample_weight,
                training=True,
            )
        finally:
            sam._losses_override = []
        scaled = loss * ops.cast(loss_scale, loss.dtype)
        return scaled, (loss, y_pred, new_non_trainable, new_metrics)

    return loss_function


def _parts(sam: SharpnessAwareMinimization, data: tuple) -> list[_Split]:
    num_splits = sam.num_batch_splits or 1
    return [_Split(data, None, None)] if num_splits == 1 else _split(data, num_splits)


def unperturbed_passes(
    sam: SharpnessAwareMinimization,
    value_and_grad: Callable,
    trainable: list,
    non_trainable: list,
    metrics: list,
    data: tuple,
    loss_scale: Any,
) -> UnperturbedPasses:
    """The first pass of each split of `data` = (x, y, sample_weight) at w, on the
    variables' values; nothing is assigned.

    `value_and_grad(f, values)` is the backend's: it returns `(f(values), ∇f(values))`
    for `f(values) -> (scalar, aux)`, with `None` allowed for unconnected values.
    `loss_scale` is the optimizer's current loss scale (1 without loss scaling).
    Each split continues from the non-trainable state the previous one left (an empty
    split, possible only at run time, changes none).
    """
    gradients, starts, loss, predictions = [], [], None, []
    for (x, y, sample_weight), share, nonempty in _parts(sam, data):
        function = _scaled_loss(
            sam, x, y, sample_weight, loss_scale, non_trainable, metrics
        )
        (_, (part_loss, y_pred, next_non_trainable, next_metrics)), part_gradients = (
            value_and_grad(function, trainable)
        )
        gradients.append(_fill_none(part_gradients, trainable))
        starts.append(non_trainable)
        if share is not None:
            [part_loss] = _share_of([part_loss], share, nonempty)
        loss = part_loss if loss is None else loss + part_loss
        non_trainable = _masked(nonempty, next_non_trainable, non_trainable)
        metrics = _masked(nonempty, next_metrics, metrics)
        predictions.append(y_pred)
    y_pred = predictions[0] if len(predictions) == 1 else _concatenate(predictions)
    return UnperturbedPasses(gradients, starts, non_trainable, metrics, loss, y_pred)


def perturbed_passes(
    sam: SharpnessAwareMinimization,
    value_and_grad: Callable,
    trainable: list,
    passes: UnperturbedPasses,
    metrics: list,
    data: tuple,
    loss_scale: Any,
) -> list:
    """The second pass of each split, at w + ε; returns the perturbed gradients
    averaged over the splits by their shares.

    ε comes from g / loss_scale (zero when g is not finite, so that a loss-scale
    overflow reaches the optimizer as a non-finite gradient at w and the
    `LossScaleOptimizer` skips the step); the pass starts from the *same*
    non-trainable state as the split's unperturbed one (same dropout mask), and its
    state (batch-norm updates, metrics) is dropped.
    """
    summed = None
    parts = _parts(sam, data)
    for (part, share, nonempty), gradients, start in zip(
        parts, passes.gradients, passes.starts
    ):
        finite = all_finite(gradients)
        epsilon = sharpness_aware_perturbation(
            [g / ops.cast(loss_scale, g.dtype) for g in gradients],
            trainable,
            sam.rho,
            sam.adaptive,
            sam.eta,
        )
        perturbed_weights = [
            w + ops.where(finite, e, ops.zeros_like(e))
            for w, e in zip(trainable, epsilon)
        ]
        perturbed = _scaled_loss(sam, *part, loss_scale, start, metrics)
        _, perturbed_gradients = value_and_grad(perturbed, perturbed_weights)
        perturbed_gradients = _fill_none(perturbed_gradients, trainable)
        summed = _add_share(summed, perturbed_gradients, share, nonempty)
    return summed


def _share_of(tensors: Sequence[Any], share: Any, nonempty: Any) -> list:
    """Each tensor times its split's share of the batch; zero for an empty split."""
    shared = [t * ops.cast(share, t.dtype) for t in tensors]
    return _masked(nonempty, shared, [ops.zeros_like(t) for t in shared])


def _add_share(total: list | None, tensors: list, share: Any, nonempty: Any) -> list:
    """`total` (None: nothing yet) plus a split's tensors times its share (the tensors
    as they are for the whole batch, `share` None)."""
    if share is not None:
        tensors = _share_of(tensors, share, nonempty)
    return tensors if total is None else [s + t for s, t in zip(total, tensors)]


def _fill_none(gradients: Sequence[Any], weights: Sequence[Any]) -> list:
    return [ops.zeros_like(w) if g is None else g for g, w in zip(gradients, weights)]


def sharpness_step(
    sam: SharpnessAwareMinimization,
    value_and_grad: Callable,
    state: tuple,
    data: tuple,
    loss_scale: Any,
    passes: UnperturbedPasses | None = None,
) -> SamGradients:
    """One SAM step on `state` = (trainable, non-trainable, metrics values) and
    `data` = (x, y, sample_weight): both passes (the first ones may be given, already
    run), the perturbed gradients averaged over the splits; with LookSAM the new g_v
    goes into the direction variables' places in the returned non-trainable values
    (the last finite g_v is kept on a loss-scale overflow: the step is skipped and
    retried at the same iteration)."""
    trainable, non_trainable, metrics = state
    if passes is None:
        passes = unperturbed_passes(sam, value_and_grad, *state, data, loss_scale)
    gradients = perturbed_passes(
        sam, value_and_grad, trainable, passes, metrics, data, loss_scale
    )
    values = list(passes.non_trainable_values)
    indices = sam._direction_indices()
    if indices:
        unperturbed = None  # g averaged over the splits as g_s is: LookSAM's only
        for (_, share, nonempty), split_gradients in zip(
            _parts(sam, data), passes.gradients
        ):
            unperturbed = _add_share(unperturbed, split_gradients, share, nonempty)
        plain, perturbed = (
            [g / ops.cast(loss_scale, g.dtype) for g in tensors]
            for tensors in (unperturbed, gradients)
        )
        finite = ops.logical_and(all_finite(plain), all_finite(perturbed))
        directions = [non_trainable[i] for i in indices]
        new = _masked(finite, looksam_direction(plain, perturbed), directions)
        for index, value in zip(indices, new):
            values[index] = value
    return SamGradients(
        gradients, values, passes.metrics_values, passes.loss, passes.y_pred
    )


def step_between(
    sam: SharpnessAwareMinimization,
    value_and_grad: Callable,
    state: tuple,
    data: tuple,
    loss_scale: Any,
) -> SamGradients:
    """A step between SAM steps: one pass on the whole batch gives g, applied as it
    is or as LookSAM's g + α (‖g‖/‖g_v‖) g_v."""
    trainable, non_trainable, metrics = state
    function = _scaled_loss(sam, *data, loss_scale, non_trainable, metrics)
    (_, (loss, y_pred, values, new_metrics)), gradients = value_and_grad(
        function, trainable
    )
    gradients = _fill_none(gradients, trainable)
    indices = sam._direction_indices()
    if indices:
        directions = [non_trainable[i] for i in indices]
        gradients = looksam_gradient(gradients, directions, sam.looksam_alpha)
    return SamGradients(gradients, list(values), new_metrics, loss, y_pred)


def is_sharpness_step(sam: SharpnessAwareMinimization, iterations: Any) -> Any:
    """Whether the optimizer's iteration t takes the SAM step: t mod k = 0."""
    return ops.equal(ops.mod(iterations, sam.interval), 0)


def train_step_gradients(
    sam: SharpnessAwareMinimization,
    value_and_grad: Callable,
    state: tuple,
    data: tuple,
    loss_scale: Any,
    iterations: Any,
    kind: bool | None = None,
    passes: UnperturbedPasses | None = None,
) -> SamGradients:
    """What the optimizer applies this step, for any `interval`, on `state` =
    (trainable, non-trainable, metrics values) and `data` = (x, y, sample_weight).

    `kind` True is a SAM step (its first `passes` may be given, already run), False a
    step between; `None` decides from `iterations`, with `interval` > 1 by a
    conditional (`lax.cond`, `tf.cond`, a Python `if` on PyTorch), so that only the
    branch taken runs."""
    if sam.interval == 1 or kind is True:
        return sharpness_step(sam, value_and_grad, state, data, loss_scale, passes)
    if kind is False:
        return step_between(sam, value_and_grad, state, data, loss_scale)
    return SamGradients(
        *ops.cond(
            is_sharpness_step(sam, iterations),
            lambda: tuple(sharpness_step(sam, value_and_grad, state, data, loss_scale)),
            lambda: tuple(step_between(sam, value_and_grad, state, data, loss_scale)),
        )
    )


def stateful_train_step(
    sam: SharpnessAwareMinimization,
    data: Any,
    value_and_grad: Callable,
    *,
    tracked_loss: Callable = lambda loss: loss,
    update_context: Callable = contextlib.nullcontext,
    kind: bool | None = None,
) -> dict:
    """The train step for trainers that keep state in the variables (TensorFlow,
    PyTorch): read the values, run the passes, then assign the unperturbed pass'
    state and let the optimizer apply the gradient at w (`kind` as in
    `train_step_gradients`)."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    optimizer = sam.optimizer
    result = train_step_gradients(
        sam,
        value_and_grad,
        (
            [v.value for v in sam.trainable_variables],
            [v.value for v in sam.non_trainable_variables],
            [v.value for v in sam.metrics_variables],
        ),
        (x, y, sample_weight),
        optimizer.scale_loss(ops.ones((), "float32")),
        optimizer.iterations.value,
        kind,
    )
    with update_context():
        for variable, value in zip(
            sam.non_trainable_variables, result.non_trainable_values
        ):
            variable.assign(value)
        for variable, value in zip(sam.metrics_variables, result.metrics_values):
            variable.assign(value)
        optimizer.apply(result.gradients, sam.trainable_variables)
    sam._loss_tracker.update_state(
        tracked_loss(result.loss), sample_weight=_batch_size(x)
    )
    return sam.compute_metrics(x, y, result.y_pred, sample_weight)


def _backend_module(name: str):
    if name not in _BACKENDS:
        raise ValueError(
            "SharpnessAwareMinimization runs on the TensorFlow, JAX and PyTorch "
            f"backends; the Keras backend is {name!r}."
        )
    return importlib.import_module(f"keras_optnotes.training._sam_{name}")


@keras.saving.register_keras_serializable(package="keras_optnotes")
class SharpnessAwareMinimization(keras.Model):
    """Sharpness-aware minimization: a model whose `fit` descends the worst-case loss
    in a ρ-ball around the weights, every step or every k-th step (LookSAM between).

    Symbols: w the trainable weights of `model`, g = ∇L(w) the gradient of the training
    loss (the compiled loss with `sample_weight`, plus `model.losses`) on the batch,
    ρ = `rho`, η_T = `eta`, m = `num_batch_splits`, k = `interval`,
    α = `looksam_alpha`, t the optimizer's `iterations` (0 at the first step).

    A SAM step, per split of the batch (m splits, or the whole batch):

        ε = ρ g / ‖g‖₂                         (SAM; ε = 0 when g = 0)
        ε = ρ T² g / ‖T g‖₂,  T = |w| + η_T     (ASAM, `adaptive=True`)
        g_s = ∇L(w + ε)

    and the compiled optimizer applies the mean of the m perturbed gradients g_s at w.
    Every norm and dot product is global, over all trainable weights together.

    With `interval=k` the SAM step runs when t mod k = 0 (t = 0, k, 2k, …); at the
    other steps one forward and backward pass on the whole batch gives g, and the
    optimizer applies

        g                                  (`looksam_alpha=None`, Composer's SAM
                                            `interval`)
        g + α (‖g‖ / ‖g_v‖) g_v            (LookSAM)

    where g_v = g_s − (g·g_s / ‖g‖²) g, the part of the SAM gradient orthogonal to g,
    is computed at the last SAM step (g and g_s averaged over the splits there;
    g_v = g_s when g = 0) and kept in the wrapper's non-trainable variables; a zero
    g_v gives g. `interval=1` is SAM at every step.

    Use it in place of the model for training; it shares the model's layers and
    weights, so `predict`, `evaluate` and the weights are the model's:

    Args:
        model: the `keras.Model` to train.
        rho: the radius ρ > 0 of the neighbourhood (finite).
        adaptive: ASAM's scale-invariant neighbourhood instead of SAM's ball.
        eta: η_T ≥ 0, added to |w| in ASAM's scale T (unused when `adaptive=False`).
        num_batch_splits: m ≥ 1 (m-sharpness with m-sharpness' m = batch size / m):
            each split is perturbed by its own gradient. A batch that m does not
            divide is cut into near-equal parts (split i holds rows ⌊iB/m⌋ to
            ⌊(i+1)B/m⌋ − 1 of a batch of B), each weighted by its share of the batch;
            a batch smaller than m gives one-sample parts. `None` is m = 1. Steps
            between SAM steps do not split the batch.
        interval: k ≥ 1, the SAM gradient every k-th step of the optimizer; the
            other steps cost one forward and backward pass.
        looksam_alpha: α ≥ 0 (finite), LookSAM's weight on the kept direction g_v at
            the steps between SAM steps; `None` applies the plain gradient there.
            Unused when `interval=1`.
        **kwargs: `keras.Model` keywords (`name`, ...).

    Returns:
        A `keras.Model`; `compile` it and `fit` it as any model.

    Example:

        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        sam = SharpnessAwareMinimization(model, rho=0.05)
        sam.compile(optimizer="sgd", loss="mse")
        sam.fit(x, y, epochs=2)
        model.predict(x)  # the trained model itself

        # SAM every 5th step, LookSAM's reused direction in between.
        looksam = SharpnessAwareMinimization(model, interval=5, looksam_alpha=0.7)

    References:
        Foret, Kleiner, Mobahi, Neyshabur, "Sharpness-Aware Minimization for
        Efficiently Improving Generalization", ICLR 2021 (m-sharpness: their §4.1).
        Kwon, Kim, Park, Choi, "ASAM: Adaptive Sharpness-Aware Minimization for
        Scale-Invariant Learning of Deep Neural Networks", ICML 2021.
        Liu, Mai, Chen, Hsieh, You, "Towards Efficient and Scalable Sharpness-Aware
        Minimization", CVPR 2022 (LookSAM, their Algorithm 1).
        MosaicML Composer, `composer.algorithms.SAM` (the `interval` argument).

    Conventions (where implementations differ):
        - Both passes run in training mode (dropout on, batch normalization on batch
          statistics). The non-trainable state (batch-norm moving statistics, seed
          generators, ...) advances once per split, from the unperturbed pass; the
          perturbed pass starts from the same state, so it sees the same dropout mask
          (as google-research/sam, which reuses the step's random key), and its
          batch-norm updates are discarded (davda54/sam issue 17; Keras 2's SAM
          updated them at the perturbed weights).
        - The reported loss and metrics are those of the unperturbed pass.
        - The m perturbed gradients are averaged, not summed (Keras 2 summed them).
        - With m splits the batch-norm moving statistics take m updates per SAM step,
          one per split, as they would over m batches; one at the steps between.
        - ASAM's T applies to every weight, biases included; Kwon et al.'s code leaves
          the parameters not named "weight" unscaled.
        - The phase of `interval` follows the optimizer's `iterations` (a step that a
          `LossScaleOptimizer` skips is retried as the same kind of step), and g_v is
          saved with the wrapper's weights, so a run resumed mid-interval (`.keras`,
          `load_weights`, `BackupAndRestore`) continues as if never interrupted.
          LookSAM's g_v is one variable per trainable weight, created when the model
          is built; freezing or unfreezing weights afterwards is not supported.
          Liu et al. also scale the g_v term by the step's own gradient norm, as here.
        - `tf.distribute` (MirroredStrategy and the like): each replica perturbs with
          the gradient of its own shard (google-research/sam's default); only the
          perturbed gradients are all-reduced, by the optimizer, as in a plain step.
          LookSAM's g_v is the mean of the replicas' g_v (each from its own
          shard), and each replica adds it to its own shard's g. (Keras divides
          each replica's loss by the number of replicas R, so the stored g_v is that
          mean over R; only its direction enters the update.) On JAX the train
          step sees the global batch, so with `keras.distribution` the perturbation
          (and g_v) uses the global gradient; g_v is replicated, not sharded.
        - Loss scaling (`mixed_float16`, `LossScaleOptimizer`, `loss_scale_factor`):
          both passes use the scaled loss; ε and g_v come from the unscaled
          gradients; a non-finite first-pass gradient gives ε = 0, so the optimizer
          sees the non-finite gradient and a `LossScaleOptimizer` skips the step
          (keeping the last finite g_v).
    """

    def __init__(
        self,
        model: keras.Model,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.01,
        num_batch_splits: int | None = None,
        interval: int = 1,
        looksam_alpha: float | None = None,
        **kwargs: Any,
    ):
        if not isinstance(model, keras.Model):
            raise ValueError(
                "Argument `model` must be a keras.Model. "
                f"Received: model={model!r} (of type {type(model).__name__})"
            )
        self._backend_step = _backend_module(keras.backend.backend())
        rho = check_positive("rho", rho)
        adaptive = check_bool("adaptive", adaptive)
        eta = check_in_range("eta", eta, 0.0)
        if num_batch_splits is not None:
            num_batch_splits = check_integer("num_batch_splits", num_batch_splits, 1)
        interval = check_integer("interval", interval, 1)
        if looksam_alpha is not None:
            looksam_alpha = check_in_range("looksam_alpha", looksam_alpha, 0.0)
        super().__init__(**kwargs)
        self.model = model
        self.rho = rho
        self.adaptive = adaptive
        self.eta = eta
        self.num_batch_splits = num_batch_splits
        self.interval = interval
        self.looksam_alpha = looksam_alpha
        self._looksam_directions = []
        if model.built:
            self._create_looksam_directions()
            self.built = True

    def build(self, input_shape: Any) -> None:
        if not self.model.built:
            self.model.build(input_shape)
        self._create_looksam_directions()
        self.built = True

    def _create_looksam_directions(self) -> None:
        """LookSAM's g_v, one variable per trainable weight (none without LookSAM):
        state saved with the weights. Mean-aggregated, so that writing back the
        same value at the steps between SAM steps leaves it unchanged under
        `tf.distribute`."""
        if self.looksam_alpha is None or self.interval == 1:
            return
        if self._looksam_directions:
            return
        self._looksam_directions = [
            self.add_weight(
                shape=weight.shape,
                dtype=weight.dtype,
                initializer="zeros",
                trainable=False,
                autocast=False,
                aggregation="mean",
                name=f"looksam_direction_{index}",
            )
            for index, weight in enumerate(self.model.trainable_variables)
        ]

    def _direction_indices(self) -> list[int]:
        """Where LookSAM's g_v variables sit in `self.non_trainable_variables`."""
        if not self._looksam_directions:
            return []
        position = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
        return [position[id(v)] for v in self._looksam_directions]

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.model(inputs, training=training)

    def make_train_function(self, force: bool = False) -> Any:
        # Compiled on JAX and TensorFlow, the backend module's own functions, one per
        # kind of step (see _sam_jax.py, _sam_tensorflow.py); None where it has none.
        if self.train_function is not None and not force:
            return self.train_function
        own = getattr(self._backend_step, "make_train_function", None)
        function = None if own is None or self.run_eagerly else own(self)
        if function is None:
            return super().make_train_function(force)
        self.train_function = function
        return function

    def train_step(self, *args: Any) -> Any:
        # TensorFlow and PyTorch call train_step(data), JAX train_step(state, data).
        return self._backend_step.train_step(self, *args)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            model=keras.saving.serialize_keras_object(self.model),
            rho=self.rho,
            adaptive=self.adaptive,
            eta=self.eta,
            num_batch_splits=self.num_batch_splits,
            interval=self.interval,
            looksam_alpha=self.looksam_alpha,
        )
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects: Any = None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(
            config.pop("model"), custom_objects=custom_objects
        )
        return cls(model, **config)
