"""Fault tolerance: a `model.fit` killed with SIGKILL mid-epoch, restarted with
`keras.callbacks.BackupAndRestore`, ends where the uninterrupted run ends.

The processes are in `processes/backup_and_restore.py`: the first one is killed inside
epoch 3, the second one restarts the same `fit` and also runs the references.
"""

import json
import signal

import keras
import numpy as np
import pytest
from processes import backup_and_restore as script
from processes.launch import describe, run_script

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the TensorFlow backend's op determinism",
)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    """The killed process and the restarted one, and what each left behind."""
    folder = tmp_path_factory.mktemp("fault_tolerance")
    first = run_script("backup_and_restore.py", "first", folder)
    assert first.returncode == -signal.SIGKILL, f"first process: {describe(first)}"
    metadata = {
        setup: json.loads(
            (folder / f"backup_{setup}/training_metadata.json").read_text()
        )
        for setup in ("epoch", "batches")
    }
    second = run_script("backup_and_restore.py", "second", folder)
    assert second.returncode == 0, f"second process: {describe(second)}"
    return folder, metadata


@pytest.fixture(scope="module")
def results(work_dir):
    return np.load(work_dir[0] / "results.npz")


def _run(results, name):
    return {
        key.split("/", 1)[1]: results[key]
        for key in results.files
        if key.startswith(f"{name}/") and not key.endswith("/epochs_run")
    }


@pytest.mark.slow
def test_killed_mid_epoch_then_restarted_equals_the_uninterrupted_run(results):
    resumed = _run(results, "resumed_epoch")
    uninterrupted = _run(results, "uninterrupted")
    assert sorted(resumed) == sorted(uninterrupted)
    # 4 weights; iterations, learning rate, m and v of each weight.
    assert len(resumed) == 4 + 2 + 8
    assert uninterrupted["optimizer/0"] == script.EPOCHS * script.BATCHES
    for key, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


@pytest.mark.slow
def test_the_backup_held_the_last_finished_epoch_and_only_the_rest_was_run(
    work_dir, results
):
    folder, metadata = work_dir
    kill_epoch = script.KILL_AT[0]
    assert metadata["epoch"]["epoch"] == kill_epoch
    assert int(results["resumed_epoch/epochs_run"]) == script.EPOCHS - kill_epoch
    # Finished runs delete their backups.
    assert not (folder / "backup_epoch").exists()


@pytest.mark.slow
def test_backups_within_an_epoch_do_not_resume_exactly(work_dir, results):
    """Keras restores the epoch number, not the batch: with `save_freq=<batches>` the
    restarted `fit` reruns the whole interrupted epoch from weights that already
    took its first batches, so those batches are applied twice."""
    _, metadata = work_dir
    epoch, batch = script.INTERRUPT_AT
    saved_batches = batch // script.SAVE_EVERY * script.SAVE_EVERY
    assert metadata["batches"] == {"epoch": epoch, "batch": saved_batches - 1}
    assert int(results["resumed_batches/epochs_run"]) == script.EPOCHS - epoch

    resumed = _run(results, "resumed_batches")
    replayed = _run(results, "replayed")
    total_steps = script.EPOCHS * script.BATCHES + saved_batches
    assert resumed["optimizer/0"] == total_steps
    for key, value in replayed.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
    uninterrupted = _run(results, "uninterrupted")
    assert not np.allclose(resumed["weight/0"], uninterrupted["weight/0"], atol=1e-4)
