"""PrecheltEarlyStopping against Prechelt 1998's definitions worked out by hand."""

import math

import keras
import numpy as np
import pytest

from keras_optnotes.callbacks import PrecheltEarlyStopping


@pytest.fixture(scope="module")
def model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def feed(
    callback, model, validation, training=None, mark_weights=False, key="val_loss"
):
    """Feeds scripted epoch logs (`validation` as `key`); returns the logs seen and the
    1-based stop epoch."""
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    seen = []
    for epoch, value in enumerate(validation):
        if mark_weights:
            # Epoch t leaves every weight equal to t, so restored weights name an epoch.
            model.set_weights([np.full_like(w, epoch + 1) for w in model.get_weights()])
        logs = {key: value, "loss": 1.0 if training is None else training[epoch]}
        callback.on_epoch_end(epoch, logs)
        seen.append(logs)
        if model.stop_training:
            break
    callback.on_train_end()
    return seen, callback.stopped_epoch


# E_va(t), t = 1..7. E_opt = 0.7 from t = 3 on, so by hand
# GL(4) = 100 (0.72/0.7 - 1) = 2.857, GL(5) = 7.143, GL(6) = 5.714, GL(7) = 14.29.
GL_VALIDATION = [1.0, 0.8, 0.7, 0.72, 0.75, 0.74, 0.80]


@pytest.mark.parametrize("alpha, expected_stop", [(5.0, 5), (7.5, 7), (20.0, 0)])
def test_gl_stops_at_the_first_epoch_above_alpha(model, alpha, expected_stop):
    callback = PrecheltEarlyStopping("GL", alpha=alpha, restore_best_weights=False)
    seen, stopped = feed(callback, model, GL_VALIDATION)
    assert stopped == expected_stop
    by_hand = [0.0, 0.0, 0.0, 2.857142857, 7.142857143, 5.714285714, 14.28571429]
    logged = [logs["prechelt_gl"] for logs in seen]
    np.testing.assert_allclose(logged, by_hand[: len(logged)], rtol=1e-7)


# k = 5. By hand:
# t=5:  strip E_tr (1, .8, .6, .5, .45): P = 1000 (3.35 / (5 * .45) - 1) = 488.9;
#       GL = 2.857; PQ = 0.00584 (strip end, below alpha).
# t=8:  strip (.5, .45, .44, .44, .44): P = 1000 (2.27 / 2.2 - 1) = 31.82;
#       GL = 11.43; PQ = 0.3592.
# t=9:  strip (.45, .44, .44, .44, .44): P = 1000 (2.21 / 2.2 - 1) = 4.545;
#       GL = 14.29; PQ = 3.143 (above 0.5 and 1.0, but not a strip end).
# t=10: strip (.44, .44, .44, .44, .43): P = 1000 (2.19 / 2.15 - 1) = 18.60;
#       GL = 17.14; PQ = 0.9214 (strip end).
PQ_VALIDATION = [1.0, 0.9, 0.8, 0.7, 0.72, 0.74, 0.76, 0.78, 0.80, 0.82]
PQ_TRAINING = [1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.44, 0.44, 0.44, 0.43]


@pytest.mark.parametrize("alpha, expected_stop", [(0.5, 10), (1.0, 0), (0.005, 5)])
def test_pq_is_checked_only_at_strip_ends(model, alpha, expected_stop):
    callback = PrecheltEarlyStopping(
        "PQ", alpha=alpha, strip_length=5, restore_best_weights=False
    )
    seen, stopped = feed(callback, model, PQ_VALIDATION, PQ_TRAINING)
    assert stopped == expected_stop
    logged = [logs["prechelt_pq"] for logs in seen]
    assert all(math.isnan(v) for v in logged[:4])
    by_hand = {5: 0.005844, 8: 0.3592, 9: 3.143, 10: 0.9214}
    for t, value in by_hand.items():
        if t <= len(logged):
            assert logged[t - 1] == pytest.approx(value, rel=1e-3)


# k = 2. Strip ends t = 2, 4, 6, 8, 10, 12 with E_va .8, .6, .7, .65, .75, .9:
# rises at t = 6 (.7 > .6), t = 10 (.75 > .65) and t = 12 (.9 > .75); t = 8 breaks
# the run. UP_1 stops at 6, UP_2 at 12 (rises at 10 and 12), UP_3 never.
UP_VALIDATION = [1.0, 0.8, 0.7, 0.6, 0.65, 0.7, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9]


@pytest.mark.parametrize("strips, expected_stop", [(1, 6), (2, 12), (3, 0)])
def test_up_counts_successive_rising_strips(model, strips, expected_stop):
    callback = PrecheltEarlyStopping(
        "UP",
        strip_length=2,
        successive_strips=strips,
        restore_best_weights=False,
    )
    seen, stopped = feed(callback, model, UP_VALIDATION)
    assert stopped == expected_stop
    if strips == 3:
        logged = [logs["prechelt_up"] for logs in seen]
        assert logged == [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 2]


def test_restore_best_weights(model):
    callback = PrecheltEarlyStopping("GL", alpha=5.0, restore_best_weights=True)
    _, stopped = feed(callback, model, GL_VALIDATION, mark_weights=True)
    assert stopped == 5
    assert callback.best_epoch == 3  # E_va(3) = 0.7 is the lowest
    for weight in model.get_weights():
        np.testing.assert_array_equal(weight, 3.0)


def test_inside_fit_history_holds_the_criterion():
    x = np.linspace(-1, 1, 16, dtype="float32").reshape(8, 2)
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    # Runs before the Prechelt callback and replaces the measured val_loss by the
    # script, so the stopping epoch is known in advance.
    script = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: logs.update(val_loss=GL_VALIDATION[epoch])
    )
    stop = PrecheltEarlyStopping("GL", alpha=5.0)
    history = model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=20,
        verbose=0,
        callbacks=[script, stop],
    )
    assert len(history.history["loss"]) == 5
    assert history.history["prechelt_gl"][4] == pytest.approx(7.142857, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"criterion": "XY"}, "criterion"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"criterion": "PQ", "alpha": "big"}, "alpha"),
        ({"strip_length": 0}, "strip_length"),
        ({"strip_length": 2.5}, "strip_length"),
        ({"criterion": "UP", "successive_strips": 0}, "successive_strips"),
        ({"criterion": "UP", "alpha": 1.0}, "alpha"),
        ({"criterion": "GL", "successive_strips": 2}, "successive_strips"),
    ],
)
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        PrecheltEarlyStopping(**kwargs)


def test_missing_monitor_is_named(model):
    callback = PrecheltEarlyStopping("GL")
    callback.set_model(model)
    callback.on_train_begin()
    with pytest.raises(ValueError, match="val_loss"):
        callback.on_epoch_end(0, {"loss": 1.0})


# -- mode: quantities to maximize (issue 12) ----------------------------------------

# val_accuracy, t = 1..6; the error 1 − accuracy is 0.5, 0.3, 0.2, 0.21, 0.25, 0.3,
# so by hand GL(4) = 100 (0.21/0.2 − 1) = 5, GL(5) = 25, GL(6) = 50.
ACCURACY = [0.5, 0.7, 0.8, 0.79, 0.75, 0.7]


def feed_metric(callback, model, values):
    return feed(callback, model, values, mark_weights=True, key="val_accuracy")


@pytest.mark.parametrize("mode", ["max", "auto"])
def test_accuracy_rising_is_progress_not_error(model, mode):
    callback = PrecheltEarlyStopping(
        "GL", alpha=10.0, monitor="val_accuracy", mode=mode
    )
    seen, stopped = feed_metric(callback, model, ACCURACY)
    np.testing.assert_allclose(
        [logs["prechelt_gl"] for logs in seen], [0, 0, 0, 5, 25], atol=1e-9
    )
    assert stopped == 5
    assert callback.best_epoch == 3 and callback.best_value == 0.8
    for weight in model.get_weights():  # restored: the highest accuracy, epoch 3
        np.testing.assert_array_equal(weight, 3.0)


def test_min_mode_on_accuracy_is_what_the_user_asked(model):
    callback = PrecheltEarlyStopping(
        "GL", alpha=10.0, monitor="val_accuracy", mode="min"
    )
    _, stopped = feed_metric(callback, model, ACCURACY)
    assert stopped == 2  # 0.7 is a GL of 40 above the lowest value, 0.5


@pytest.mark.parametrize(
    "monitor, direction",
    [
        ("val_loss", "min"),
        ("loss", "min"),
        ("val_acc", "max"),
        ("val_accuracy", "max"),
        ("val_sparse_categorical_accuracy", "max"),
        ("val_auc", "max"),
        ("val_custom_loss", "min"),
    ],
)
def test_auto_mode_reads_the_direction_from_the_name(monitor, direction):
    assert PrecheltEarlyStopping(monitor=monitor).direction == direction


def test_auto_mode_asks_the_model_metrics_then_gives_up_before_training():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x = np.zeros((4, 2), "float32")
    stop = PrecheltEarlyStopping(monitor="val_mae")
    model.fit(
        x,
        x[:, :1],
        validation_data=(x, x[:, :1]),
        epochs=1,
        verbose=0,
        callbacks=[stop],
    )
    assert stop.direction == "min"  # MeanAbsoluteError's own direction
    unknown = PrecheltEarlyStopping(monitor="val_score")
    with pytest.raises(ValueError, match=r"monitor='val_score'.*mode='max'"):
        model.fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[unknown])


def test_max_mode_needs_a_quantity_between_0_and_1(model):
    callback = PrecheltEarlyStopping(monitor="val_accuracy", mode="max")
    with pytest.raises(ValueError, match=r"val_accuracy.*\[0, 1\].*1.5"):
        feed_metric(callback, model, [0.5, 1.5])


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"monitor": 123}, "monitor"),
        ({"monitor": ""}, "monitor"),
        ({"train_monitor": None}, "train_monitor"),
        ({"restore_best_weights": "no"}, "restore_best_weights"),
        ({"mode": "up"}, "mode"),
        ({"verbose": "loud"}, "verbose"),
        ({"verbose": -1}, "verbose"),
        ({"criterion": 5}, "criterion"),
    ],
)
def test_more_bad_arguments_are_named(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`") as error:
        PrecheltEarlyStopping(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(error.value)


def test_config_round_trip_keeps_the_mode():
    stop = PrecheltEarlyStopping("UP", strip_length=3, monitor="val_auc", mode="max")
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(stop)
    )
    assert type(restored) is PrecheltEarlyStopping
    assert restored.get_config() == stop.get_config()
    assert restored.get_config()["mode"] == "max"
