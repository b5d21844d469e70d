"""Each update rule against its float64 NumPy reference (`reference_rules.py`), and by
hand.

The trajectories run 200 steps on random gradients of several shapes. With float64
variables the package must match the reference to a relative error of 1e-12 (measured:
below 1e-15; a constant rounded through float32 on the way, such as β = 0.9 becoming
0.899999976…, drifts by about 1e-8), with float32 variables to 1e-5. Keras keeps the
learning rate in a float32 variable, so the reference uses that rounded value.
"""

import math

import keras
import numpy as np
import pytest
import reference_rules

from keras_optnotes import optimizers

STEPS = 200
SHAPES = [(7,), (3, 5), (2, 3, 4)]
LEARNING_RATE = 0.01

# (rule, keyword arguments): every epsilon placement, AMSGrad, a non-zero initial
# accumulator, non-default decay rates.
CASES = [
    ("GradientDescent", {}),
    ("Momentum", {"momentum": 0.9}),
    ("NesterovMomentum", {"momentum": 0.8}),
    ("Adagrad", {"epsilon_inside_sqrt": True}),
    ("Adagrad", {"epsilon_inside_sqrt": False, "initial_accumulator_value": 0.1}),
    ("RMSprop", {"epsilon_inside_sqrt": True}),
    ("RMSprop", {"epsilon_inside_sqrt": False, "rho": 0.8}),
    ("Adadelta", {}),
    ("Adadelta", {"rho": 0.9, "epsilon": 1e-5}),
    ("Adam", {"epsilon_inside_sqrt": True}),
    ("Adam", {"epsilon_inside_sqrt": False}),
    ("Adam", {"epsilon_inside_sqrt": True, "amsgrad": True}),
    ("Adam", {"epsilon_inside_sqrt": False, "amsgrad": True, "beta_2": 0.99}),
]


def _case_id(case):
    rule, kwargs = case
    return rule + "".join(f"-{k}={v}" for k, v in kwargs.items())


def _relative_error(actual, expected):
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


def _run_both(rule, kwargs, dtype, seed=0):
    """Runs the package and the reference on the same gradients; yields both per step."""
    rng = np.random.default_rng(seed)
    initial = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    # Gradients with a slowly varying mean and changing scale, so that the adaptive
    # rules see different magnitudes over time.
    gradients = [
        [
            (rng.normal(size=s) * (0.1 + t / STEPS) + 0.3 * np.sin(t / 17)).astype(
                dtype
            )
            for s in SHAPES
        ]
        for t in range(STEPS)
    ]
    variables = [keras.Variable(x, dtype=dtype) for x in initial]
    optimizer = optimizers.get(rule, learning_rate=LEARNING_RATE, **kwargs)
    # The learning rate as Keras stores it: a float32 variable.
    lr = float(np.float32(LEARNING_RATE))
    references = [reference_rules.RULES[rule](lr, s, **kwargs) for s in SHAPES]
    expected = [x.astype(np.float64) for x in initial]
    for t, grads in enumerate(gradients, start=1):
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
        expected = [
            ref.step(theta, g.astype(np.float64), t)
            for ref, theta, g in zip(references, expected, grads)
        ]
        yield t, [v.numpy() for v in variables], expected


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 1e-5)])
def test_trajectory_matches_float64_reference(case, dtype, tolerance):
    rule, kwargs = case
    worst = 0.0
    for _, actual, expected in _run_both(rule, kwargs, dtype):
        for a, e in zip(actual, expected):
            assert a.dtype == np.dtype(dtype)
            worst = max(worst, _relative_error(a.astype(np.float64), e))
    assert worst <= tolerance, f"worst relative error {worst:.3e} > {tolerance:.0e}"


# One step worked out by hand: θ = 1.0, g = 0.5, η = 0.1 (0.1 rounded to float32 is
# 0.100000001490116…, so the hand values use `LR32`). Where ε's placement matters, ε is
# large next to the accumulator, so that √(G + ε) and √G + ε differ in the third digit
# (with G = 0.25 and ε = 1e-8 they agree to second order: ε/(2√G) = ε).
LR32 = float(np.float32(0.1))
HAND = [
    ("GradientDescent", {}, 1.0 - LR32 * 0.5),
    ("Momentum", {}, 1.0 - LR32 * 0.5),
    # a = 0.5; φ ← φ − η (g + β a) = 1 − 0.1·(0.5 + 0.45)
    ("NesterovMomentum", {}, 1.0 - LR32 * 0.95),
    # G = 0.25; 0.5 / √(0.25 + 0.05) = 0.9129 (not 0.5 / 0.55 = 0.9091)
    ("Adagrad", {"epsilon": 0.05}, 1.0 - LR32 * 0.5 / math.sqrt(0.3)),
    # G = 0.1 + 0.25; 0.5 / (√0.35 + 0.05) = 0.7787 (not 0.5 / √0.4 = 0.7906)
    (
        "Adagrad",
        {
            "epsilon_inside_sqrt": False,
            "initial_accumulator_value": 0.1,
            "epsilon": 0.05,
        },
        1.0 - LR32 * 0.5 / (math.sqrt(0.35) + 0.05),
    ),
    # G = 0.1·0.25 = 0.025; 0.5 / √(0.025 + 0.01) (not 0.5 / (√0.025 + 0.01))
    ("RMSprop", {"epsilon": 0.01}, 1.0 - LR32 * 0.5 / math.sqrt(0.035)),
    # 0.5 / (√0.025 + 0.01) (not 0.5 / √0.035)
    (
        "RMSprop",
        {"epsilon": 0.01, "epsilon_inside_sqrt": False},
        1.0 - LR32 * 0.5 / (math.sqrt(0.025) + 0.01),
    ),
    # E_g = 0.05·0.25 = 0.0125; Δ = −√1e-6/√(0.0125+1e-6)·0.5
    ("Adadelta", {}, 1.0 - LR32 * math.sqrt(1e-6) / math.sqrt(0.0125 + 1e-6) * 0.5),
    # m = 0.05, v = 0.00025; √(1−0.999)/(1−0.9) · 0.05/√(0.00025 + 1e-4)
    (
        "Adam",
        {"epsilon": 1e-4},
        1.0 - LR32 * math.sqrt(0.001) / 0.1 * 0.05 / math.sqrt(0.00035),
    ),
    # m̂ = 0.5, v̂ = 0.25: 0.5 / (0.5 + 0.1) = 0.8333 (not 0.5 / √0.35 = 0.8452)
    (
        "Adam",
        {"epsilon_inside_sqrt": False, "epsilon": 0.1},
        1.0 - LR32 * 0.5 / 0.6,
    ),
]


@pytest.mark.parametrize("rule, kwargs, expected", HAND, ids=[h[0] for h in HAND])
def test_one_step_by_hand(rule, kwargs, expected):
    variable = keras.Variable([1.0], dtype="float64")
    optimizer = optimizers.get(rule, learning_rate=0.1, **kwargs)
    optimizer.apply([keras.ops.convert_to_tensor([0.5], dtype="float64")], [variable])
    assert variable.numpy()[0] == pytest.approx(expected, rel=1e-14)


def test_momentum_second_step_by_hand():
    # a₁ = 0.5, θ₁ = 1 − 0.05; a₂ = 0.9·0.5 + 0.2 = 0.65, θ₂ = θ₁ − 0.1·0.65
    variable = keras.Variable([1.0], dtype="float64")
    optimizer = optimizers.Momentum(learning_rate=0.1)
    for g in (0.5, 0.2):
        optimizer.apply([keras.ops.convert_to_tensor([g], dtype="float64")], [variable])
    assert variable.numpy()[0] == pytest.approx(
        1.0 - LR32 * 0.5 - LR32 * 0.65, rel=1e-14
    )


def test_nesterov_weights_are_the_notes_look_ahead_point():
    """On L(θ) = ½ θᵀAθ − bᵀθ the model's weights after each step equal θ_t − ηβa_t,
    where θ_t, a_t follow the notes' literal equations with the gradient evaluated at
    the look-ahead point θ − ηβa."""
    A = np.array([[3.0, 0.5], [0.5, 1.0]])
    b = np.array([1.0, -2.0])
    eta, beta = float(np.float32(0.05)), 0.9

    def grad(x):
        return A @ x - b

    theta = np.array([2.0, -1.0])
    a = np.zeros(2)
    variable = keras.Variable(theta.copy(), dtype="float64")
    optimizer = optimizers.NesterovMomentum(learning_rate=0.05, momentum=beta)
    for _ in range(60):
        phi = variable.numpy()
        optimizer.apply([keras.ops.convert_to_tensor(grad(phi))], [variable])
        a = beta * a + grad(theta - eta * beta * a)
        theta = theta - eta * a
        np.testing.assert_allclose(variable.numpy(), theta - eta * beta * a, rtol=1e-12)
