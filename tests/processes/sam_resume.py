"""Launched by tests/test_sam.py and test_sam_efficient.py: in a fresh process that imports only the package,
load `DIR/sam.keras`, train one more epoch on `DIR/data.npz` (float64), and write the
wrapper's weights (the model's, and LookSAM's kept direction when it has one) and the
optimizer's variables to `DIR/resumed.npz`; print one JSON
line with the loaded class and its SAM arguments.

    python sam_resume.py DIR
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_optnotes  # noqa: E402, F401  (alone registers the package's classes)

directory = Path(sys.argv[1])
keras.config.set_floatx("float64")
data = np.load(directory / "data.npz")
sam = keras.saving.load_model(directory / "sam.keras")
sam.fit(
    data["x"],
    data["y"],
    sample_weight=data["sample_weight"],
    batch_size=16,
    epochs=1,
    shuffle=False,
    verbose=0,
)
arrays = {f"w{i}": w for i, w in enumerate(sam.get_weights())}
arrays.update(
    {
        f"o{i}": keras.ops.convert_to_numpy(v)
        for i, v in enumerate(sam.optimizer.variables)
    }
)
np.savez(directory / "resumed.npz", **arrays)
config = sam.get_config()
print(
    json.dumps(
        {
            "class_name": type(sam).__name__,
            "config": {
                k: config[k]
                for k in (
                    "rho",
                    "adaptive",
                    "eta",
                    "num_batch_splits",
                    "interval",
                    "looksam_alpha",
                )
            },
        }
    )
)
