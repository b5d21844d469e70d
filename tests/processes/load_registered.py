"""Loads what `tests/test_serialization.py` saved, in a fresh process that imports
`keras_optnotes` alone (no subpackage), and reports what came back.

    python load_registered.py FOLDER

FOLDER holds `<name>.keras` files (models) and `<name>.json` files (other objects, as
`keras.saving.serialize_keras_object` wrote them). The report, FOLDER/loaded.json, maps
each name to the classes found in the loaded object and its serialized form, or to the
error that loading raised.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def classes_in_model(model) -> list[str]:
    """`module.Class` of the model, its layers (wrapped ones too), their regularizers,
    and its optimizer (and the rules inside a wrapper)."""
    import keras

    found = [model]
    for layer in model._flatten_layers(include_self=False):
        found.append(layer)
        found.extend(
            getattr(layer, name, None)
            for name in ("kernel_regularizer", "bias_regularizer", "layer")
        )
    optimizer = model.optimizer
    while optimizer is not None:
        found.append(optimizer)
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return [
        f"{type(x).__module__}.{type(x).__qualname__}"
        for x in found
        if x is not None and not isinstance(x, (str, keras.Variable))
    ]


def load(path: str) -> dict:
    import keras

    if path.endswith(".keras"):
        model = keras.saving.load_model(path)
        return {
            "classes": classes_in_model(model),
            "optimizer": keras.saving.serialize_keras_object(model.optimizer),
        }
    with open(path) as f:
        obj = keras.saving.deserialize_keras_object(json.load(f))
    return {
        "classes": [f"{type(obj).__module__}.{type(obj).__qualname__}"],
        "serialized": keras.saving.serialize_keras_object(obj),
    }


def main(folder: str) -> int:
    import keras_optnotes  # noqa: F401 - the one import under test

    report = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext not in (".keras", ".json") or stem == "loaded":
            continue
        try:
            report[stem] = load(os.path.join(folder, name))
        except Exception:  # noqa: BLE001 - reported to the test, which fails on it
            report[stem] = {"error": traceback.format_exc(limit=3)}
    with open(os.path.join(folder, "loaded.json"), "w") as f:
        json.dump(report, f, default=repr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
