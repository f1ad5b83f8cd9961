"""``sweep run FILE | head -1``: the reader of the output goes away, the sweep does not."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_a_sweep_whose_output_reader_went_away_runs_to_its_end(ray_session, tmp_path):
    """The first line written after `head` exited raised BrokenPipeError in the driver: the
    sweep stopped before its first trial (parent KILLED, no trial) and the command exited 0."""
    sweep_file = tmp_path / "piped.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "piped",
        "data": {"source": "synthetic", "samples": 200, "features": 8, "classes": 3},
        "model": {"builder": "mlp", "args": {"units": [8]}},
        "fit": {"epochs": 2},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"seed": 0, "trials": 2, "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}},
        "scheduler": {"type": "fifo"},
    }))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = subprocess.Popen([sys.executable, "-m", "sweep.cli", "run", str(sweep_file), "--tracking-uri", uri, "--storage", str(tmp_path / "runs"),
                               "--address", ray_session], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = driver.stdout.readline()
    driver.stdout.close()  # `head -1` exits
    err = driver.stderr.read()
    assert driver.wait(timeout=300) == 0, err[-3000:]
    assert first.startswith("preflight: loading the data"), first  # said at once, before the seconds of the preflight
    assert "the reader of this command's output went away; the sweep goes on" in err and "Traceback" not in err, err[-3000:]
    from sweep.tracking import store

    parent = store.find_parent_run(uri, "piped")
    assert parent.info.status == "FINISHED"
    assert sorted(c.data.tags["sweep.status"] for c in store.child_runs(uri, parent)) == ["completed", "completed"]
