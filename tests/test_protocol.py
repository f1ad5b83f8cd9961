"""sweep.protocol: the names workers and the driver share. The trial statuses are a public
contract (MLflow tags, ``--json``, the trials CSV), so they must print as their plain value on
every supported Python, and the objective decides max vs min the same way everywhere."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from sweep import protocol
from sweep.protocol import FINISHED, FailureKind, Objective, TrialStatus, failure_kind, format_failure, is_finished

PROTOCOL_FILE = Path(protocol.__file__)


@pytest.mark.parametrize("status", list(TrialStatus))
def test_a_status_writes_as_its_plain_value(status):
    plain = status.value
    assert str(status) == plain and f"{status}" == plain and format(status) == plain and "%s" % status == plain
    assert f"{status:>15}" == f"{plain:>15}"
    assert json.dumps(status) == json.dumps(plain) and json.dumps({status: [status]}) == json.dumps({plain: [plain]})
    assert status == plain and hash(status) == hash(plain) and {plain: 1}[status] == 1  # tags read back are plain strings
    assert TrialStatus(plain) is status


def test_the_status_values_are_the_contract():
    assert [s.value for s in TrialStatus] == ["completed", "stopped_early", "failed", "running", "pending", "interrupted"]


def test_finished_statuses():
    assert {s for s in TrialStatus if s.is_finished()} == set(FINISHED) == {TrialStatus.COMPLETED, TrialStatus.STOPPED_EARLY, TrialStatus.FAILED}
    assert is_finished("failed") and not is_finished("interrupted") and not is_finished(None) and not is_finished("whatever")


CHECK = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("protocol", sys.argv[1])
module = importlib.util.module_from_spec(spec); sys.modules["protocol"] = module; spec.loader.exec_module(module)
out = [[str(s), f"{s}", "{}".format(s), "%s" % s, json.dumps(s)] for s in module.TrialStatus]
out.append([str(module.FailureKind.OUT_OF_MEMORY), f"{module.FailureKind.INFEASIBLE}"])
print(json.dumps(out))
"""


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12", "3.13"])
def test_statuses_print_the_same_on_every_python(version):
    """3.11 changed what an enum mixed with str formats as: the explicit __str__/__format__ keep it."""
    python = shutil.which(f"python{version}")
    if python is None:
        pytest.skip(f"no python{version} here")
    done = subprocess.run([python, "-c", CHECK, str(PROTOCOL_FILE)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "pyenv: " in done.stderr:  # a pyenv shim for a version not selected
        pytest.skip(done.stderr.strip().splitlines()[0])
    assert done.returncode == 0, done.stderr
    want = [[s.value] * 4 + [json.dumps(s.value)] for s in TrialStatus] + [["out of memory", "infeasible"]]
    assert json.loads(done.stdout) == want


def test_a_failure_reason_reads_back_its_kind():
    for kind in FailureKind:
        reason = format_failure(kind, "batch_size 512 > 100 rows")
        assert reason == f"{kind.value}: batch_size 512 > 100 rows" and failure_kind(reason) is kind
    assert format_failure(FailureKind.OUT_OF_MEMORY, "x") == "out of memory: x"  # the text users see in sweep.reason
    assert failure_kind("ValueError: infeasible: no") is None and failure_kind(None) is None and failure_kind("infeasible") is None


def test_objective_max():
    objective = Objective("val_accuracy", "max")
    assert objective.maximize and objective.direction == "maximize" and objective.worst == -math.inf
    assert objective.better(0.9, 0.8) and not objective.better(0.8, 0.8)
    assert objective.is_better(0.9, 0.8) and objective.is_better(0.1, None) and objective.is_better(0.1, math.nan)
    assert not objective.is_better(math.nan, 0.1) and not objective.is_better(None, None) and not objective.is_better(0.8, 0.8)
    assert objective.badness(0.9) < objective.badness(0.8) < objective.badness(None) == objective.badness(math.nan) == math.inf
    assert objective.best_of([0.2, 0.9, 0.5]) == 0.9 and objective.best_of([("a", 1), ("b", 1)], key=lambda p: p[1]) == ("a", 1)
    assert objective.best_first([0.2, 0.9, 0.5], key=lambda v: v) == [0.9, 0.5, 0.2]


def test_objective_min():
    objective = Objective("val_loss", "min")
    assert not objective.maximize and objective.direction == "minimize" and objective.worst == math.inf
    assert objective.is_better(0.1, 0.2) and not objective.is_better(0.3, 0.2) and not objective.is_better(math.nan, None)
    assert objective.badness(0.1) < objective.badness(0.2) < objective.badness(None)
    assert objective.best_of([0.2, 0.1, 0.5]) == 0.1 and objective.best_of([("a", 1), ("b", 1)], key=lambda p: p[1]) == ("a", 1)
    assert objective.best_first([0.2, 0.1, 0.5], key=lambda v: v) == [0.1, 0.2, 0.5]
    assert Objective("loss") == objective.__class__("loss", "min")  # min is the sweep file's default


def test_best_first_reverses_the_whole_key_as_before():
    """warm start ranks (value, -number): ties go to the later trial for min, the earlier for max."""
    trials = [(0.5, 1), (0.5, 2), (0.9, 3)]
    key = lambda t: (t[0], -t[1])  # noqa: E731
    assert Objective("m", "min").best_first(trials, key) == [(0.5, 2), (0.5, 1), (0.9, 3)]
    assert Objective("m", "max").best_first(trials, key) == [(0.9, 3), (0.5, 1), (0.5, 2)]


def test_protocol_imports_nothing_of_sweep():
    """Workers, the driver and the command all load it: it must stay a leaf."""
    text = PROTOCOL_FILE.read_text()
    assert "from sweep" not in text and "import sweep" not in text
