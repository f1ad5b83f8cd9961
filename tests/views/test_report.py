"""The HTML/PNG report from a real sqlite MLflow store laid out like a sweep (no Ray needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweep.views import report
from sweep.tracking import tracker as tracking
from sweep.tracking.client import client as tracking_client
from sweep.tracking import store
from sweep.tracking.tags import STATUS_TAG, TRIAL_TAG

from fake_sweeps import CURVES, PARAMS, _fake_parent, _fake_trial, make_sweep, parse, png_size


def test_report_has_every_plot_one_row_per_trial_and_valid_html(tmp_path, mlflow_uri):
    make_sweep(mlflow_uri)
    page = report.write_report("fake", mlflow_uri, tmp_path / "out")
    parsed = parse(page)
    assert set(parsed.images) == {f"plot-{key}" for key in report.PLOTS}
    assert all(src.startswith("data:image/png;base64,") and len(src) > 1000 for src in parsed.images.values())
    assert sorted(parsed.rows) == [f"t{i}" for i in range(len(PARAMS))]
    assert parsed.rows[0] == "t2", "the best trial (0.85) is the first row"
    text = page.read_text()
    assert '<td class="num" title="ray trial t2">0002</td>' in text, "the trial column shows the number as MLflow's run name does"
    assert "(trial 0002, ray t2)" in text
    for key in report.PLOTS:
        assert png_size(tmp_path / "out" / f"{key}.png") == report.PLOT_PIXELS
    text = page.read_text()
    markup = re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.S)  # plotly.js's own strings name sites it never loads here
    assert "http://" not in markup and "https://" not in markup, "self-contained: no external resources"
    assert "<script src" not in text and "cdn.plot.ly" not in text.split("plotly.js v")[0], "plotly.js is inlined, not fetched"


def test_importance_ranks_the_params_even_with_a_conditional_one():
    data = report.SweepData("x", "val_accuracy", "max", "p", "FINISHED", 0, [
        report.TrialRecord(f"r{i}", f"t{i}", i, "completed", params, max(curve), len(curve), 1, 0, 0)
        for i, (params, curve) in enumerate(zip(PARAMS, CURVES))
    ])
    found, why = report.importances(data)
    assert why is None
    assert {"learning_rate", "optimizer"} <= set(found) <= {"learning_rate", "optimizer", "momentum"}
    assert sum(found.values()) == pytest.approx(1.0)


def test_too_few_trials_still_give_a_report_that_says_why(tmp_path, mlflow_uri):
    make_sweep(mlflow_uri, "tiny", curves=[[0.5, 0.6, 0.7]])
    page = report.write_report("tiny", mlflow_uri, tmp_path)
    parsed = parse(page)
    assert len(parsed.rows) == 1 and len(parsed.images) == len(report.PLOTS)
    assert report.importances(report.collect(mlflow_uri, "tiny"))[1] == "needs at least 2 finished trials, has 1"


def test_report_of_an_unknown_sweep_is_one_error_line(tmp_path, mlflow_uri):
    import subprocess
    import sys

    make_sweep(mlflow_uri)
    out = subprocess.run([sys.executable, "-m", "sweep.cli", "report", "nope", "--tracking-uri", mlflow_uri, "--out", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.splitlines()[0] == f"error: no sweep named 'nope' in {mlflow_uri}"
    assert out.stderr.splitlines()[1].strip() == "sweeps there: fake (sweep list shows them)"


def test_log_to_parent_run_never_raises(mlflow_uri):
    assert report.log_to_parent_run(mlflow_uri, "missing", "no-such-run-id") is None


def make_running_sweep(uri: str, name: str = "live") -> str:
    """A sweep mid-run, as the tracker leaves it: the parent and one trial still RUNNING, the
    running trial tagged ``running`` with per-epoch metrics but no best value yet."""
    client = tracking_client(uri)
    experiment_id = tracking.ensure_experiment(client, uri, name)
    parent = _fake_parent(client, experiment_id, name)
    client.log_param(parent.info.run_id, "config.search.trials", "4")
    for number, (status, curve) in enumerate([("completed", [0.5, 0.7, 0.8]), ("stopped_early", [0.3]), ("running", [0.6, 0.9])]):
        _fake_trial(client, experiment_id, parent, name, number, status, curve, {"learning_rate": str(0.01 * (number + 1))})
    return parent.info.run_id


def test_status_best_and_report_work_while_a_sweep_runs(tmp_path, mlflow_uri, capsys):
    import json

    from sweep import cli

    make_running_sweep(mlflow_uri)
    assert cli.main(["status", "live", "--json", "--tracking-uri", mlflow_uri]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["sweep_status"] == "RUNNING"
    assert status["trials"] == {"completed": 1, "stopped_early": 1, "running": 1}
    assert status["trials_requested"] == 4
    assert cli.main(["best", "live", "--json", "--tracking-uri", mlflow_uri]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["trial_id"] == "t2" and best["value"] == pytest.approx(0.9), "a running trial's latest value counts"
    parsed = parse(report.write_report("live", mlflow_uri, tmp_path / "out"))
    assert sorted(parsed.rows) == ["t0", "t1", "t2"]


def test_a_large_sweep_fetches_only_the_best_and_latest_curves(mlflow_uri, monkeypatch):
    """A history is one request per trial: the report fetches MAX_CURVES of them, never all."""
    monkeypatch.setattr(report, "MAX_CURVES", 4)
    client = tracking_client(mlflow_uri)
    experiment_id = tracking.ensure_experiment(client, mlflow_uri, "many")
    parent = _fake_parent(client, experiment_id, "many")
    values = [0.50, 0.91, 0.60, 0.95, 0.55, 0.70, 0.65, 0.52]  # the best two: trials 3 and 1
    for number, value in enumerate(values):
        _fake_trial(client, experiment_id, parent, "many", number, "completed", [value - 0.1, value], {"learning_rate": str(number)})
    client.set_terminated(parent.info.run_id, "FINISHED")
    data = report.collect(mlflow_uri, "many")
    with_curves = sorted(t.number for t in data.trials if t.curve)
    assert len(data.trials) == 8
    assert with_curves == [1, 3, 6, 7]  # the best two, then the two started last
    assert all(t.epochs == 2 and t.value is not None for t in data.trials)  # every trial still has its numbers


def test_big_sweeps_draw_the_best_and_an_even_spread():
    trials = [report.TrialRecord(str(i), str(i), i, "completed", {}, float(i % 97), 1, 1, None, None) for i in range(1000)]
    picked = report.best_and_spread(trials, "max", 100)
    assert len(picked) == 100 and [t.number for t in picked] == sorted(t.number for t in picked)
    assert sum(t.value == 96.0 for t in picked) == sum(t.value == 96.0 for t in trials)  # every best one kept
    assert len(report.spread(trials, 10)) == 10 and report.spread(trials[:5], 10) == trials[:5]


def test_status_and_best_of_a_finished_sweep_read_its_parent_run_only(mlflow_uri):
    """A finished sweep wrote its counts and best run on the parent: no scan of 10,000 children."""
    client = tracking_client(mlflow_uri)
    experiment_id = tracking.ensure_experiment(client, mlflow_uri, "done")
    parent = _fake_parent(client, experiment_id, "done")
    best_id = _fake_trial(client, experiment_id, parent, "done", 0, "completed", [0.5, 0.9], {"learning_rate": "0.01"})
    _fake_trial(client, experiment_id, parent, "done", 1, "completed", [0.95, 0.1], {"learning_rate": "0.1"})  # a better value, not the sweep's pick
    for key, value in {"sweep.trials.completed": "7", "sweep.trials.stopped_early": "5", "sweep.trials.running": "0", "sweep.best_run_id": best_id}.items():
        client.set_tag(parent.info.run_id, key, value)
    client.set_terminated(parent.info.run_id, "FINISHED")
    assert store.status_summary(mlflow_uri, "done")["trials"] == {"completed": 7, "stopped_early": 5}
    best = store.best_summary(mlflow_uri, "done")
    assert best["mlflow_run_id"] == best_id and best["value"] == 0.9 and best["trial_id"] == "t0"


def _outcomes_of(uri: str, name: str) -> list:
    """The ledger's view of a fake sweep: one TrialOutcome per child run, as the runner holds them."""
    from sweep.driver.ledger import TrialOutcome

    parent = store.find_parent_run(uri, name)
    outcomes = []
    for run in store.child_runs(uri, parent):
        tags = run.data.tags
        outcomes.append(TrialOutcome(
            trial_id=tags[TRIAL_TAG], number=int(tags["sweep.trial_number"]), params=dict(run.data.params),
            status=tags[STATUS_TAG], epochs=int(tags["sweep.epochs"]), value=float(tags["sweep.best_value"]),
            best_epoch=int(tags["sweep.best_epoch"]), started_at=run.info.start_time / 1000, mlflow_run_id=run.info.run_id,
        ))
    return outcomes


def test_the_end_of_sweep_report_is_built_from_the_ledger_and_matches_one_read_from_mlflow(mlflow_uri):
    parent_id = make_sweep(mlflow_uri, "ledger")
    from_runs = report.collect(mlflow_uri, "ledger", parent_id)
    from_ledger = report.collect(mlflow_uri, "ledger", parent_id, _outcomes_of(mlflow_uri, "ledger"))

    def view(data):
        return [(t.run_id, t.trial_id, t.number, t.status, t.params, t.value, t.epochs, t.best_epoch, t.curve) for t in data.trials]

    assert view(from_ledger) == view(from_runs)
    assert [len(t.curve) for t in from_ledger.trials] == [len(c) for c in CURVES]


def test_report_of_an_ended_sweep_copies_the_logged_one_unless_rebuilt(mlflow_uri, tmp_path):
    from sweep import cli

    parent_id = make_sweep(mlflow_uri, "ended")
    assert report.log_to_parent_run(mlflow_uri, "ended", parent_id, _outcomes_of(mlflow_uri, "ended"), status="FINISHED") is not None
    client = tracking_client(mlflow_uri)
    parent = client.get_run(parent_id)
    _fake_trial(client, parent.info.experiment_id, parent, "ended", 9, "completed", [0.1, 0.2, 0.3], {"learning_rate": "0.5"})

    copied = report.write_report("ended", mlflow_uri, tmp_path / "copy")
    assert sorted(parse(copied).rows) == ["t0", "t1", "t2", "t3", "t4"], "the report as the sweep logged it"
    logged = Path(client.download_artifacts(parent_id, f"{report.ARTIFACT_DIR}/{report.HTML_NAME}", str(tmp_path / "dl")))
    assert copied.read_bytes() == logged.read_bytes()
    assert f"parent run {parent_id} (finished)" in copied.read_text(), "built while the run ended, it said (running) for ever"
    assert all(png_size(tmp_path / "copy" / f"{key}.png") == report.PLOT_PIXELS for key in report.PLOTS)

    assert cli.main(["report", "ended", "--tracking-uri", mlflow_uri, "--out", str(tmp_path / "fresh"), "--rebuild", "--quiet"]) == 0
    assert sorted(parse(tmp_path / "fresh" / report.HTML_NAME).rows) == ["t0", "t1", "t2", "t3", "t4", "t9"], "--rebuild reads the runs"


def test_interactive_plots_are_embedded_offline_and_trials_link_to_the_ui(tmp_path, mlflow_uri, monkeypatch):
    """Optuna's plotly figures are in the one HTML file (plotly.js inlined once); with a known UI
    address the trial ids link to their runs; the PNGs keep real values on their axes."""
    make_sweep(mlflow_uri)
    monkeypatch.setenv("SWEEP_MLFLOW_UI", "http://127.0.0.1:5000")
    page = report.write_report("fake", mlflow_uri, tmp_path / "out", rebuild=True)
    text = page.read_text()
    for key in report.INTERACTIVE:
        assert f'id="interactive-{key}"' in text, key
    assert text.count("plotly.js v") == 1, "plotly.js inlined exactly once"
    assert "best (trial 0002)" in text and "stopped early" in text
    data = report.collect(mlflow_uri, "fake")
    best = data.best()
    assert f'href="http://127.0.0.1:5000/#/experiments/{data.experiment_id}/runs/{best.run_id}?workflowType=machine_learning"' in text
    parse(page)


def test_learning_curves_zoom_to_the_informative_range():
    values = [0.1] + [0.8 + i / 100 for i in range(20)]
    low, high = report.informative_range(values, "max")
    assert 0.75 < low < 0.81 and high > 0.99
    assert report.informative_range([0.1, 0.2, 0.3], "max") is None
    assert report.axis_ticks(0.001, 0.1, True)[1] == pytest.approx(0.01)


def test_parallel_axes_follow_the_declared_search_space():
    """A numeric categorical is a category axis in its declared order (no tick at 72 between 16
    and 128); a float is on a log axis when, and only when, the space says ``log``."""
    params = [{"batch_size": "16", "momentum": "0.001", "learning_rate": "0.0001"},
              {"batch_size": "128", "momentum": "0.9", "learning_rate": "0.1"},
              {"batch_size": "32", "momentum": "0.5", "learning_rate": "0.01"}]
    trials = [report.TrialRecord(f"r{i}", f"t{i}", i, "completed", p, 0.5, 1, 1, 0, 0) for i, p in enumerate(params)]
    space = report.search_space(repr({
        "batch_size": {"type": "categorical", "choices": [16, 32, 128]},
        "momentum": {"type": "float", "low": 0.0, "high": 0.99, "log": False},
        "learning_rate": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    }))
    positions, labels, use_log = report._axis_values(trials, "batch_size", space["batch_size"])
    assert labels == ["16", "32", "128"] and positions == [0.0, 1.0, 0.5] and not use_log
    assert report._axis_values(trials, "momentum", space["momentum"])[2] is False  # spans decades, declared linear
    assert report._axis_values(trials, "momentum")[2] is True  # what was inferred before
    assert report._axis_values(trials, "learning_rate", space["learning_rate"])[2] is True
    assert report.search_space("{'a': {'type': 'float'") == {} and report.search_space("__import__('os')") == {}


def test_a_report_file_is_replaced_whole_or_not_at_all(tmp_path):
    """Ctrl-C during `sweep report --rebuild` left a truncated history.png (found by a helper)."""
    from sweep.views import report

    target = tmp_path / "history.png"
    target.write_bytes(b"the earlier, complete file")
    with pytest.raises(KeyboardInterrupt):
        with report._replaced_whole(target) as partial:
            partial.write_bytes(b"half a fi")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"the earlier, complete file" and list(tmp_path.iterdir()) == [target]
    with report._replaced_whole(target) as partial:
        partial.write_bytes(b"new")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]
