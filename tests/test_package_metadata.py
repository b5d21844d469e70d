"""What package indexes and tools read: one version, the licence, the typing marker,
and TensorFlow only behind its extra."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

import keras_optnotes

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
    "project"
]


def test_one_version_everywhere():
    assert keras_optnotes.__version__ == PROJECT["version"]
    citation = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(r"^version: (\S+)$", citation, re.M)[1] == PROJECT["version"]


def test_licence_is_the_apache_2_text_and_an_spdx_expression():
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_package_is_marked_typed():
    assert (Path(keras_optnotes.__file__).parent / "py.typed").is_file()


def test_tensorflow_only_behind_its_extra_in_the_installed_metadata():
    requirements = [
        Requirement(r) for r in importlib.metadata.requires("keras-optnotes")
    ]
    core = {r.name for r in requirements if r.marker is None}
    assert core == {"keras", "numpy"}
    tensorflow = [r for r in requirements if r.name == "tensorflow"]
    assert [str(r.marker) for r in tensorflow] == ['extra == "tensorflow"']
    (keras,) = [r for r in requirements if r.name == "keras"]
    assert str(keras.specifier) == ">=3.15.0"
