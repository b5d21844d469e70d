"""The backend-independent rule tests, run again in a second pytest process on JAX.

Keras picks its backend once per process, so the JAX run needs its own interpreter.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

HERE = Path(__file__).parent
FILES = ["test_optimizers_reference.py", "test_optimizers_conformance.py"]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") == "jax",
    reason="already running on JAX",
)
def test_rule_conformance_on_jax_backend():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = "\n".join(result.stdout.splitlines()[-30:])
    assert result.returncode == 0, f"JAX run failed:\n{tail}\n{result.stderr[-3000:]}"
    assert " passed" in tail and " failed" not in tail
