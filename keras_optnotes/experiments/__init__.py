"""The notes' comparisons and ablations as library functions.

Each module runs one experiment and returns a frozen result dataclass with its
settings, its summary rows and its per-epoch curves; nothing here prints, parses
arguments or writes files (the `keras-optnotes` commands and the tutorials do that).
Importing this package does not import TensorFlow; running an experiment does.

- `keras_optnotes.experiments.compare`: `run_comparison`, the update rules from the
  same initial weights on one network → `Comparison` of `OptimizerRun`.
- `keras_optnotes.experiments.regularize`: `run_ablation`, no regularization and each
  regularizer alone → `Ablation` of `TechniqueRun`, with both generalization gaps.
- `keras_optnotes.experiments.sharpness`: `compare_batch_sizes`, small- against
  large-batch minima and the large batch under SAM, ASAM, LARS, SWA and Lookahead →
  `BatchSizeComparison` of `SolutionRun`, with the interpolation line.
- `keras_optnotes.experiments.critical_batch`: `run_critical_batch`, steps to a target
  loss against the batch size, the fitted critical batch size and the gradient noise
  scale → `CriticalBatchExperiment`.
- `keras_optnotes.experiments.protocol`: the evidence protocol the experiments share
  (splits, grids, seeds, intervals, budgets), written once.
"""

from keras_optnotes.experiments.compare import (
    Comparison,
    OptimizerRun,
    run_comparison,
)
from keras_optnotes.experiments.regularize import (
    Ablation,
    TechniqueRun,
    run_ablation,
)
from keras_optnotes.experiments.sharpness import (
    BatchSizeComparison,
    SolutionRun,
    compare_batch_sizes,
)

__all__ = [
    "Ablation",
    "BatchSizeComparison",
    "Comparison",
    "OptimizerRun",
    "SolutionRun",
    "TechniqueRun",
    "compare_batch_sizes",
    "run_ablation",
    "run_comparison",
]
