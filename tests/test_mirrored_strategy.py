"""`tf.distribute.MirroredStrategy` over 2 logical CPU devices (issue 3, item 6).

`model.fit` with each rule gives the same weights as one device with the same global
batch, and the optimizer takes the plain path by itself under the strategy (XLA cannot
reach variables that live on other devices).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_optnotes import optimizers


@pytest.fixture(scope="module")
def results():
    script = Path(__file__).with_name("distributed_mirrored.py")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("rule", optimizers.list_rules())
def test_mirrored_fit_equals_one_device(results, rule):
    result = results[rule]
    assert result["replicas"] == 2
    assert result["max_difference"] < 1e-5 * max(1.0, result["max_change"])
    # The fused path switched itself off under the strategy, and only there.
    assert result["fused_under_mirrored"] is False
    assert result["fused_functions_under_mirrored"] == 0
    assert result["fused_on_one_device"] is True
    assert result["fused_functions_on_one_device"] == 1
