"""The notes' seven update rules on four 2-D test functions: where does each one go?

The notes' section. "Optimization algorithms" (최적화 알고리즘): 1. Gradient Descent,
2. Momentum, 3. Nesterov Accelerated Gradient, 4. Adagrad, 5. Adadelta, 6. RMSprop,
7. Adam. The notes give each rule's equation and one sentence of what it does; of
Nesterov they claim "극소점 부근에서 모멘텀때문에 수렴이 늦어지는 현상을 완화해준다"
(near a minimum it mitigates the slow convergence that momentum causes), and they write
Nesterov with the gradient at a look-ahead point,

    a_{t+1} = β a_t + ∇L(θ_t − η β a_t) ;  θ_{t+1} = θ_t − η a_{t+1},

which an optimizer that only sees the gradient at the current weights cannot evaluate;
`keras_optnotes.optimizers.NesterovMomentum` keeps the look-ahead point φ = θ − η β a
as the weights instead (SPEC §1: a ← β a + g ; φ ← φ − η (g + β a)).

The questions. (1) What paths do the seven rules take on an ill-conditioned quadratic,
Rosenbrock's valley, a saddle point and Beale's function, and how fast does each reach
the minimum? (2) Does Nesterov really overshoot less than momentum near the minimum, and
reach it sooner? (3) Are the notes' look-ahead form and the implemented form the same
algorithm — the same iterates, not just similar ones?

The setup. Each rule of `keras_optnotes.optimizers` (as `keras.optimizers.Optimizer`s,
stepped with `apply`, float64) runs 500 steps from a fixed start on each function, at
every learning rate of a grid of seven half-decades; the table reports, for each rule
and function, the learning rate that reached f − f* < 1e-6 in the fewest steps (or, when
none did, the one with the lowest final f − f*). Momentum and Nesterov use β = 0.9.
Adadelta's grid is centred on the paper's η = 1 (the notes say it "has no learning
rate"; the grid shows what that costs). Nothing here is random, so there are no seeds.

- quadratic: f = ½ (x² + 50 y²), condition number 50, start (−4, 1), f* = 0 at 0;
- Rosenbrock: f = (1 − x)² + 100 (y − x²)², start (−1.2, 1), f* = 0 at (1, 1);
- saddle: f = ½ x² − ½ y² + ¼ y⁴, start (1, 10⁻³) next to the saddle at the origin,
  f* = −¼ at (0, ±1);
- Beale: f = Σᵢ (cᵢ − x + x yⁱ)², c = (1.5, 2.25, 2.625), start (1, 1.5), f* = 0 at
  (3, 0.5).

How to read the output. `02_optimizer_paths.png` draws the paths over the contours (at
each rule's chosen learning rate); `02_convergence.png` plots f − f* against the step on
a log scale; `02_momentum_vs_nesterov.png` zooms in on the quadratic with the same η and
β for both, and `02_optimizer_paths.md` has the tables: the convergence table, the
overshoot table (how far past the minimum the slow coordinate swings, how many times it
crosses it, steps to ‖θ − θ*‖ < 10⁻⁶) for β = 0.8, 0.9, 0.95, and the largest
difference between the notes' look-ahead iterates, computed in NumPy from the notes'
equations, and the package's `NesterovMomentum` weights, over every Nesterov run.

Run:

    python tutorials/02_optimizer_paths.py           # about 55 s on two idle cores
    python tutorials/02_optimizer_paths.py --quick   # smoke run, seconds

References:
    Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    Nesterov, "A method of solving a convex programming problem with convergence rate
    O(1/k²)", 1983; Sutskever, Martens, Dahl, Hinton, "On the importance of
    initialization and momentum in deep learning", ICML 2013.
    Duchi, Hazan, Singer 2011 (Adagrad); Zeiler 2012 (Adadelta); Tieleman & Hinton
    2012 (RMSprop); Kingma & Ba 2015 (Adam).
    Rosenbrock, "An automatic method for finding the greatest or least value of a
    function", 1960; Beale, "On an iterative method for finding a local minimum of a
    function of more than one variable", 1958.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import _common

OPTIONS = {"default_seeds": 1}
if __name__ == "__main__":  # bad options fail at once, before TensorFlow loads
    _common.parse_options(None, __file__, __doc__, **OPTIONS)
_common.import_backend_quietly()

import numpy as np  # noqa: E402

from keras_optnotes import optimizers  # noqa: E402
from keras_optnotes.report import new_figure  # noqa: E402

TOLERANCE = 1e-6
MOMENTUM = 0.9
HALF_DECADES = 10.0 ** np.arange(-4.0, 2.01, 0.5)
# Each rule's grid: seven half-decades around where it works on these functions.
GRIDS = {
    "GradientDescent": HALF_DECADES[1:8],  # 3e-4 … 0.3
    "Momentum": HALF_DECADES[0:7],  # 1e-4 … 0.1
    "NesterovMomentum": HALF_DECADES[0:7],
    "Adagrad": HALF_DECADES[4:11],  # 1e-2 … 10
    "Adadelta": HALF_DECADES[6:13],  # 0.1 … 100
    "RMSprop": HALF_DECADES[2:9],  # 1e-3 … 1
    "Adam": HALF_DECADES[2:9],
}
SETTINGS = {
    False: {"steps": 500, "grid": slice(None), "overshoot_steps": 600},
    True: {"steps": 40, "grid": slice(2, 4), "overshoot_steps": 40},
}
OVERSHOOT_MOMENTA = (0.8, 0.9, 0.95)
OVERSHOOT_LEARNING_RATE = 0.01


@dataclasses.dataclass(frozen=True)
class TestFunction:
    name: str
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    gradient: Callable[[np.ndarray], np.ndarray]  # (runs, 2) → (runs, 2)
    start: tuple[float, float]
    minimum: float
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 of the contour plot
    minimizers: tuple[tuple[float, float], ...]


def _quadratic_gradient(p):
    return np.stack([p[:, 0], 50.0 * p[:, 1]], axis=1)


def _rosenbrock_gradient(p):
    x, y = p[:, 0], p[:, 1]
    return np.stack([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)], axis=1)


def _saddle_gradient(p):
    return np.stack([p[:, 0], -p[:, 1] + p[:, 1] ** 3], axis=1)


BEALE = (1.5, 2.25, 2.625)


def _beale_value(x, y):
    return sum((c - x + x * y ** (i + 1)) ** 2 for i, c in enumerate(BEALE))


def _beale_gradient(p):
    x, y = p[:, 0], p[:, 1]
    dx, dy = np.zeros_like(x), np.zeros_like(y)
    for i, c in enumerate(BEALE, start=1):
        r = c - x + x * y**i
        dx += 2 * r * (y**i - 1)
        dy += 2 * r * i * x * y ** (i - 1)
    return np.stack([dx, dy], axis=1)


FUNCTIONS = (
    TestFunction(
        "quadratic",
        lambda x, y: 0.5 * (x**2 + 50 * y**2),
        _quadratic_gradient,
        (-4.0, 1.0),
        0.0,
        (-4.5, 4.5, -1.5, 1.5),
        ((0.0, 0.0),),
    ),
    TestFunction(
        "Rosenbrock",
        lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
        _rosenbrock_gradient,
        (-1.2, 1.0),
        0.0,
        (-2.0, 2.0, -1.0, 3.0),
        ((1.0, 1.0),),
    ),
    TestFunction(
        "saddle",
        lambda x, y: 0.5 * x**2 - 0.5 * y**2 + 0.25 * y**4,
        _saddle_gradient,
        (1.0, 1e-3),
        -0.25,
        (-1.5, 1.5, -1.6, 1.6),
        ((0.0, 1.0), (0.0, -1.0)),
    ),
    TestFunction(
        "Beale",
        _beale_value,
        _beale_gradient,
        (1.0, 1.5),
        0.0,
        (-0.5, 4.0, -1.5, 2.0),
        ((3.0, 0.5),),
    ),
)


def stacked_gradient(p: np.ndarray) -> np.ndarray:
    """Row k of `p` is a point of FUNCTIONS[k]: one variable carries all four runs."""
    return np.concatenate(
        [f.gradient(p[k : k + 1]) for k, f in enumerate(FUNCTIONS)], axis=0
    )


def gaps(path: np.ndarray) -> np.ndarray:
    """f − f* along a stacked path (steps + 1, 4, 2) → (steps + 1, 4)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.stack(
            [
                f.value(path[:, k, 0], path[:, k, 1]) - f.minimum
                for k, f in enumerate(FUNCTIONS)
            ],
            axis=1,
        )


def steps_to_tolerance(gap: np.ndarray, tolerance: float = TOLERANCE) -> int | None:
    """The first step from which f − f* stays below `tolerance`, or None."""
    below = np.isfinite(gap) & (gap < tolerance)
    if not below[-1]:
        return None
    above = np.flatnonzero(~below)
    return int(above[-1] + 1) if above.size else 0


def notes_nesterov(gradient, start, learning_rate, momentum, steps):
    """The notes' look-ahead form, in NumPy float64: θ_t and a_t for t = 0..steps."""
    theta = np.array(start, dtype=np.float64)
    a = np.zeros_like(theta)
    thetas, accumulators = [theta.copy()], [a.copy()]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            a = momentum * a + gradient(theta - learning_rate * momentum * a)
            theta = theta - learning_rate * a
            thetas.append(theta.copy())
            accumulators.append(a.copy())
    return np.stack(thetas), np.stack(accumulators)


def nesterov_forms_difference(learning_rate, momentum, steps, gradient, start):
    """Largest |φ_t − (θ_t − ηβa_t)| and |a_t(package) − a_t(notes)| over the run.

    φ_t are the package's `NesterovMomentum` weights, θ_t and a_t the notes' iterates.
    Both are relative to 1 + |value| so that runs on large coordinates compare alike;
    non-finite (diverged) entries are left out.
    """
    optimizer = optimizers.NesterovMomentum(
        learning_rate=learning_rate, momentum=momentum
    )
    phi, a_package = _common.descend(
        optimizer, gradient, start, steps, record=lambda o: o.accumulators[0].numpy()
    )
    # Keras keeps the learning rate in a float32 variable whatever the weights' dtype,
    # so the optimizer steps with η rounded to float32; the reference must too.
    rate = float(np.float32(learning_rate))
    theta, a_notes = notes_nesterov(gradient, start, rate, momentum, steps)
    lookahead = theta - rate * momentum * a_notes
    return (
        _relative_max(phi, lookahead),
        _relative_max(a_package, a_notes[1:]),
    )


BOUNDED = 1e6


def _relative_max(value, reference) -> float:
    """Largest |value − reference| / (1 + |reference|) where |reference| < BOUNDED:
    a diverging run (|θ| up to 1e80 on Rosenbrock at a too-large η) amplifies
    rounding by its own growth, which says nothing about the two forms."""
    with np.errstate(over="ignore", invalid="ignore"):
        error = np.abs(value - reference) / (1.0 + np.abs(reference))
        bounded = np.isfinite(error) & (np.abs(reference) < BOUNDED)
    return float(error[bounded].max()) if bounded.any() else float("nan")


def run_grid(steps: int, grid: slice) -> dict:
    """Every rule at every learning rate of its grid on the four functions."""
    start = np.array([f.start for f in FUNCTIONS])
    runs = {}
    for rule, rates in GRIDS.items():
        for rate in rates[grid]:
            kwargs = {"momentum": MOMENTUM} if "Momentum" in rule else {}
            optimizer = optimizers.get(rule, learning_rate=float(rate), **kwargs)
            runs[rule, float(rate)] = _common.descend(
                optimizer, stacked_gradient, start, steps
            )
    return runs


def choose(runs: dict) -> dict:
    """For each (rule, function): the learning rate that converged fastest (else the
    lowest final gap), its path, gaps and steps to tolerance."""
    chosen = {}
    for (rule, rate), path in runs.items():
        gap = gaps(path)
        for k, function in enumerate(FUNCTIONS):
            steps = steps_to_tolerance(gap[:, k])
            final = gap[-1, k] if np.isfinite(gap[-1, k]) else np.inf
            key = (steps if steps is not None else np.inf, final)
            best = chosen.get((rule, function.name))
            if best is None or key < best["key"]:
                chosen[rule, function.name] = {
                    "key": key,
                    "learning_rate": rate,
                    "path": path[:, k],
                    "gap": gap[:, k],
                    "steps": steps,
                    "final_gap": float(gap[-1, k]),
                }
    return chosen


def overshoot(momentum: float, steps: int) -> dict:
    """Momentum and Nesterov at the same η and β on the quadratic: the slow
    coordinate's swing past the minimum and the steps to ‖θ‖ < 1e-6."""
    quadratic = FUNCTIONS[0]
    rows = {}
    for rule in ("Momentum", "NesterovMomentum"):
        optimizer = optimizers.get(
            rule, learning_rate=OVERSHOOT_LEARNING_RATE, momentum=momentum
        )
        path = _common.descend(optimizer, quadratic.gradient, [quadratic.start], steps)
        x = path[:, 0, 0]
        distance = np.linalg.norm(path[:, 0], axis=1)
        rows[rule] = {
            "path": path[:, 0],
            "distance": distance,
            # x starts at −4 < 0: anything above 0 is a swing past the minimum.
            "overshoot": float(max(0.0, x.max())),
            "crossings": int(np.sum(np.diff(np.sign(x)) != 0)),
            "steps": steps_to_tolerance(distance, TOLERANCE),
        }
    return rows


def plot_paths(chosen: dict, staging, title: str):
    figure = new_figure(figsize=(13, 10), layout="constrained")
    for axes, function in zip(figure.subplots(2, 2).ravel(), FUNCTIONS, strict=True):
        x0, x1, y0, y1 = function.box
        x, y = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
        z = function.value(x, y) - function.minimum
        levels = np.geomspace(max(z.min(), 1e-3), z.max(), 25)
        if function.name == "saddle":  # f − f* ≥ 0 everywhere, but spans little
            levels = np.linspace(z.min(), z.max(), 25)
        axes.contour(x, y, z, levels=levels, cmap="Greys", linewidths=0.6)
        for rule in GRIDS:
            best = chosen[rule, function.name]
            path = best["path"]
            inside = np.all(np.isfinite(path), axis=1)
            axes.plot(
                path[inside, 0],
                path[inside, 1],
                lw=1.2,
                marker=".",
                markersize=2,
                label=f"{rule} (η={best['learning_rate']:.3g})",
            )
        axes.plot(*function.start, "k^", markersize=8, label="start")
        for point in function.minimizers:
            axes.plot(*point, "r*", markersize=12)
        axes.set_xlim(x0, x1)
        axes.set_ylim(y0, y1)
        _common.label(
            axes, "x", "y", f"{function.name} (red star: minimum)", legend="x-small"
        )
    figure.suptitle(title)
    return _common.save(figure, staging, "02_optimizer_paths.png")


def plot_convergence(chosen: dict, staging, steps: int):
    figure = new_figure(figsize=(13, 8), layout="constrained")
    for axes, function in zip(figure.subplots(2, 2).ravel(), FUNCTIONS, strict=True):
        for rule in GRIDS:
            best = chosen[rule, function.name]
            axes.plot(
                np.maximum(best["gap"], 1e-16),
                label=f"{rule} (η={best['learning_rate']:.3g})",
            )
        axes.axhline(TOLERANCE, color="k", ls=":", lw=0.8, label="tolerance 1e-6")
        _common.label(
            axes,
            "step",
            "f − f* (floored at 1e-16)",
            function.name,
            log="y",
            legend="x-small",
        )
        axes.set_ylim(1e-16, None)
    figure.suptitle(f"Convergence of the seven rules, {steps} steps, best η of each")
    return _common.save(figure, staging, "02_convergence.png")


def plot_overshoot(overshoots: dict, staging):
    figure = new_figure(figsize=(12, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    rows = overshoots[MOMENTUM]
    for rule, row in rows.items():
        left.plot(row["path"][:150, 0], label=f"{rule}: x (slow axis)")
        right.plot(np.maximum(row["distance"], 1e-16), label=rule)
    left.axhline(0.0, color="k", lw=0.8)
    _common.label(
        left,
        "step (the first 150)",
        "x, the slow coordinate (minimum at 0)",
        f"Quadratic, η={OVERSHOOT_LEARNING_RATE}, β={MOMENTUM}: swings past the minimum",
    )
    right.axhline(TOLERANCE, color="k", ls=":", lw=0.8, label="1e-6")
    _common.label(right, "step", "‖θ − θ*‖", "Distance to the minimum", log="y")
    return _common.save(figure, staging, "02_momentum_vs_nesterov.png")


def nesterov_verdict(overshoots: dict, limit: int) -> str:
    """The notes' claim (Nesterov mitigates momentum's slow convergence near the
    minimum), judged on the overshoot table."""
    smaller = [b for b, r in overshoots.items() if _less(r, "overshoot")]
    sooner = [
        b
        for b, r in overshoots.items()
        if (r["NesterovMomentum"]["steps"] or limit + 1)
        < (r["Momentum"]["steps"] or limit + 1)
    ]
    later = [
        b
        for b, r in overshoots.items()
        if (r["NesterovMomentum"]["steps"] or limit + 1)
        > (r["Momentum"]["steps"] or limit + 1)
    ]
    betas = ", ".join
    return (
        f"Nesterov's swing past the minimum is smaller for β = "
        f"{betas(map(str, smaller)) or 'none'} (of {betas(map(str, overshoots))}); "
        f"it reaches ‖θ‖ < 1e-6 sooner for β = {betas(map(str, sooner)) or 'none'}"
        + (f" and later for β = {betas(map(str, later))}" if later else "")
        + ". "
        + (
            "**The claim holds for the overshoot; for the time to converge it "
            "depends on β.**"
            if smaller and later
            else "**The claim holds** on this quadratic."
            if smaller and sooner
            else "**The claim does not hold** on this quadratic."
        )
    )


def _less(rows: dict, key: str) -> bool:
    return rows["NesterovMomentum"][key] < rows["Momentum"][key]


def _steps_text(steps: int | None, limit: int) -> str:
    return str(steps) if steps is not None else f"> {limit}"


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the grid, the overshoot comparison and the Nesterov check; writes the
    figures and the summary; returns the numbers."""
    args = _common.parse_options(argv, __file__, __doc__, **OPTIONS)
    settings = SETTINGS[args.quick]
    steps = settings["steps"]
    title = "02 — the seven update rules on 2-D test functions"
    with _common.output(args, title) as (staging, summary):
        runs = run_grid(steps, settings["grid"])
        chosen = choose(runs)
        overshoots = {
            beta: overshoot(beta, settings["overshoot_steps"])
            for beta in OVERSHOOT_MOMENTA
        }
        start = np.array([f.start for f in FUNCTIONS])
        nesterov = {
            rate: nesterov_forms_difference(
                rate, MOMENTUM, steps, stacked_gradient, start
            )
            for (rule, rate) in runs
            if rule == "NesterovMomentum"
        }
        plot_paths(chosen, staging, f"{steps} steps of each rule at its best η")
        plot_convergence(chosen, staging, steps)
        plot_overshoot(overshoots, staging)

        summary.text(
            f"Each rule ran {steps} steps from the same start at every η of its grid "
            "(float64, `optimizer.apply`); the table shows the η that reached "
            f"f − f* < {TOLERANCE:g} in the fewest steps, else the lowest final gap. "
            f"Momentum and Nesterov use β = {MOMENTUM}."
        )
        summary.figure("02_optimizer_paths.png", "paths over the contours")
        summary.text("## Convergence table")
        summary.table(
            ["rule", *(f"{f.name}: η, steps to 1e-6, final f − f*" for f in FUNCTIONS)],
            [
                [
                    rule,
                    *(
                        f"{chosen[rule, f.name]['learning_rate']:.3g}, "
                        f"{_steps_text(chosen[rule, f.name]['steps'], steps)}, "
                        f"{chosen[rule, f.name]['final_gap']:.2g}"
                        for f in FUNCTIONS
                    ),
                ]
                for rule in GRIDS
            ],
        )
        summary.figure("02_convergence.png", "f − f* against the step")
        summary.text(
            "## Momentum's overshoot against Nesterov's correction\n\n"
            f"The quadratic from (−4, 1), η = {OVERSHOOT_LEARNING_RATE} for both; "
            "'swing past 0' is the largest x after x (starting at −4) crosses the "
            "minimum."
        )
        summary.table(
            [
                "β",
                "rule",
                "swing past 0 (x)",
                "crossings of x = 0",
                "steps to ‖θ‖ < 1e-6",
            ],
            [
                [
                    beta,
                    rule,
                    row["overshoot"],
                    row["crossings"],
                    _steps_text(row["steps"], settings["overshoot_steps"]),
                ]
                for beta, rows in overshoots.items()
                for rule, row in rows.items()
            ],
        )
        summary.text(nesterov_verdict(overshoots, settings["overshoot_steps"]))
        summary.figure("02_momentum_vs_nesterov.png", "momentum against Nesterov")
        worst_phi = max(v[0] for v in nesterov.values())
        worst_a = max(v[1] for v in nesterov.values())
        summary.text(
            "## The notes' look-ahead Nesterov and the implemented one\n\n"
            f"Over {len(nesterov)} learning rates × 4 functions × {steps} steps "
            f"(where the run stayed bounded, |θ| < {BOUNDED:g}), the package's "
            "weights φ_t against the notes' look-ahead point θ_t − ηβa_t "
            "(computed in NumPy from a_{t+1} = βa_t + ∇L(θ_t − ηβa_t), θ_{t+1} = "
            "θ_t − ηa_{t+1}): largest relative difference "
            f"{worst_phi:.2g}; accumulators a_t: {worst_a:.2g}. The two forms give "
            "the same iterates to float64 rounding; the implemented one only stores "
            "the look-ahead point instead of θ."
        )
    return {
        "runs": runs,
        "chosen": chosen,
        "overshoots": overshoots,
        "nesterov": nesterov,
        "steps": steps,
    }


if __name__ == "__main__":
    main()
