"""keras_optnotes.report: all-or-nothing output folder, Markdown tables, CSV, figures."""

import csv
import math
import os
import sys

import numpy as np
import pytest

from keras_optnotes.cli import UsageError
from keras_optnotes.report import (
    markdown_table,
    new_figure,
    output_folder,
    print_report,
    write_csv,
    write_report,
)


def test_markdown_table_by_hand():
    table = markdown_table(
        ["rule", "loss", "epoch", "note"],
        [["Adam", 0.123456, 3, "a|b"], ["SGD", float("nan"), None, ""]],
    )
    assert table == (
        "| rule | loss | epoch | note |\n"
        "|:-----|-----:|------:|:-----|\n"
        "| Adam | 0.1235 | 3 | a\\|b |\n"
        "| SGD | nan |  |  |\n"
    )


def test_markdown_table_numpy_scalars_and_bad_rows():
    table = markdown_table(["x"], [[np.float32(2.5)], [np.int64(7)]])
    assert table.splitlines()[1:] == ["|--:|", "| 2.5 |", "| 7 |"]
    with pytest.raises(ValueError, match="Row 1 has 1 cells; expected 2"):
        markdown_table(["a", "b"], [[1, 2], [3]])


def test_write_csv_keeps_full_precision(tmp_path):
    path = write_csv(
        tmp_path / "h.csv",
        ["name", "value", "count"],
        [["a", 1 / 3, 1], ["b", np.float32(0.1), None]],
    )
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["name", "value", "count"]
    assert float(rows[1][1]) == 1 / 3
    assert float(rows[2][1]) == float(np.float32(0.1))
    assert rows[2][2] == ""


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_output_folder_moves_files_on_success(tmp_path):
    target = tmp_path / "report"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    (target / "a.md").write_text("old")
    with output_folder(target) as staging:
        assert staging.parent == tmp_path and staging != target
        (staging / "a.md").write_text("new")
        (staging / "b.csv").write_text("1,2")
        assert (target / "a.md").read_text() == "old"  # nothing moved yet
    assert _listing(target) == ["a.md", "b.csv", "keep.txt"]
    assert (target / "a.md").read_text() == "new"
    assert (target / "keep.txt").read_text() == "old"
    assert _listing(tmp_path) == ["report"]  # no staging folder left


def test_output_folder_creates_missing_parents(tmp_path):
    target = tmp_path / "x" / "y" / "report"
    with output_folder(target) as staging:
        (staging / "t.md").write_text("t")
    assert _listing(target) == ["t.md"]
    assert _listing(tmp_path) == ["x"]


def test_output_folder_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "report"
    target.mkdir()
    (target / "a.md").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with output_folder(target) as staging:
            (staging / "a.md").write_text("half")
            raise RuntimeError("boom")
    assert _listing(target) == ["a.md"] and (target / "a.md").read_text() == "old"
    assert _listing(tmp_path) == ["report"]

    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        with output_folder(fresh) as staging:
            (staging / "a.md").write_text("half")
            raise RuntimeError("boom")
    assert not fresh.exists()
    assert _listing(tmp_path) == ["report"]


def test_output_folder_rejects_a_file_and_a_path_under_a_file(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(UsageError, match="file.txt.*not a folder"):
        with output_folder(afile):
            pytest.fail("the block must not run")
    with pytest.raises(UsageError, match="file.txt"):
        with output_folder(afile / "sub"):
            pytest.fail("the block must not run")
    assert _listing(tmp_path) == ["file.txt"]


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0,
    reason="permissions do not stop root",
)
def test_output_folder_rejects_an_unwritable_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="locked.*not writable"):
            with output_folder(locked):
                pytest.fail("the block must not run")
        with pytest.raises(UsageError, match="cannot write"):
            with output_folder(locked / "sub"):
                pytest.fail("the block must not run")
    finally:
        locked.chmod(0o700)


def test_new_figure_saves_a_png_without_pyplot(tmp_path):
    figure = new_figure(figsize=(2, 2))
    axes = figure.subplots()
    axes.plot([0, 1], [0, math.pi])
    figure.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_new_figure_names_the_extra_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "keras-optnotes\[plot\]"'):
        new_figure()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_output_folder_rejects_a_read_only_place_even_for_root():
    with pytest.raises(UsageError, match="/proc/keras-optnotes-report.*cannot write"):
        with output_folder("/proc/keras-optnotes-report"):
            pytest.fail("the block must not run")


def test_write_report_and_print_report(tmp_path, capsys):
    table = markdown_table(["epoch", "loss"], [[1, 0.5]])

    def plot(path):
        figure = new_figure(figsize=(2, 2))
        figure.subplots().plot([1], [0.5])
        figure.savefig(path)

    written = write_report(
        tmp_path,
        "demo",
        summary="A demo.",
        table=table,
        columns=["epoch", "loss"],
        rows=[[1, 0.5]],
        plot=plot,
    )
    assert written == ["demo.md", "demo.csv", "demo.png"]
    assert (tmp_path / "demo.md").read_text() == (
        "# keras-optnotes demo\n\nA demo.\n\n" + table
    )
    assert (tmp_path / "demo.csv").read_text().splitlines() == ["epoch,loss", "1,0.5"]
    bare = tmp_path / "bare"
    bare.mkdir()
    assert write_report(bare, "x", summary="", table="", columns=[], rows=[]) == [
        "x.md",
        "x.csv",
    ]
    stemmed = tmp_path / "stemmed"
    stemmed.mkdir()
    assert write_report(
        stemmed, "a-b", summary="S.", table="", columns=[], rows=[], stem="a_b"
    ) == ["a_b.md", "a_b.csv"]
    assert (stemmed / "a_b.md").read_text() == "# keras-optnotes a-b\n\nS.\n\n"
    print_report("out", "A demo.", table, written)
    printed = capsys.readouterr().out
    assert printed.endswith(
        f"Wrote {os.path.join('out', 'demo.md')}, "
        f"{os.path.join('out', 'demo.csv')}, "
        f"{os.path.join('out', 'demo.png')}\n"
    )
