"""End to end: what users see after a real digits sweep (report, registry, export, warm start, MLflow UI).

One small sweep (6 trials, 3 epochs) runs once for the module; every test inspects its store.
The browser test drives Debian's Chromium headless through Playwright against ``mlflow ui``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from fake_sweeps import parse, png_size  # tests/ is on sys.path (rootdir conftest)

from .servers import wait_for_health

pytestmark = pytest.mark.slow

TRIALS, EPOCHS = 6, 3
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"

SWEEP = {
    "name": "e2e-report",
    "data": {"source": "digits", "validation_split": 0.25},
    "model": {"builder": "mlp", "args": {"units": [32]}},
    "fit": {"epochs": EPOCHS},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    "search": {
        "sampler": "tpe",
        "seed": 3,
        "trials": TRIALS,
        "space": {
            "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-1, "log": True},
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
            "momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
        },
    },
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    "tracking": {"registered_model": "e2e-digits-classifier"},
}


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory):
    """Run the sweep once; return its result, store URI and folder."""
    import sweep

    folder = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = sweep.run(SWEEP, storage=str(folder / "runs"), tracking_uri=uri, quiet=True)
    assert result.best is not None, result.trials
    return result, uri, folder


def _parent(uri: str, name: str):
    from sweep.tracking import store

    return store.find_parent_run(uri, name)


def test_report_of_the_sweep(finished, tmp_path):
    from sweep.views import report

    result, uri, _ = finished
    out = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "report", result.name, "--tracking-uri", uri, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    page = tmp_path / report.HTML_NAME
    assert out.stdout.strip() == f"report: {page.resolve()}"
    parsed = parse(page)
    assert set(parsed.images) == {f"plot-{key}" for key in report.PLOTS}
    assert sorted(parsed.rows) == sorted(result.trials["trial_id"]), "one row per trial"
    assert parsed.rows[0] == result.best.trial_id, "the best trial heads the table"
    for key in report.PLOTS:
        assert png_size(tmp_path / f"{key}.png") == report.PLOT_PIXELS
    stopped = int((result.trials["status"] == "stopped_early").sum())
    assert stopped >= 1, "ASHA stopped a trial, so the learning curves mark one"
    _keep(tmp_path / report.HTML_NAME, "report.html")


def test_the_report_is_logged_on_the_parent_run(finished):
    from mlflow.tracking import MlflowClient

    from sweep.views import report

    result, uri, _ = finished
    client = MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(result.parent_run_id, report.ARTIFACT_DIR)}
    assert logged == {f"{report.ARTIFACT_DIR}/{name}" for name in [report.HTML_NAME] + [f"{k}.png" for k in report.PLOTS]}


def test_registered_model_loads_and_predicts(finished):
    import mlflow

    from sweep.inputs import data
    from sweep.spec.config import DataConfig

    result, uri, _ = finished
    mlflow.set_tracking_uri(uri)
    model = mlflow.keras.load_model("models:/e2e-digits-classifier/1")
    dataset = data.load(DataConfig(**{**SWEEP["data"], "normalize": False}))  # the source's raw rows
    predictions = model.predict(dataset.x_val[:7], verbose=0)
    assert predictions.shape == (7, 10)
    info = mlflow.models.get_model_info("models:/e2e-digits-classifier/1")
    assert info.signature is not None and tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 64)
    assert info.saved_input_example_info is not None, "logged with an input example"
    tags = mlflow.MlflowClient().get_run(result.parent_run_id).data.tags
    assert tags["sweep.data.prepared"].startswith("standardized (the best model takes them"), tags.get("sweep.data.prepared")


def test_export_and_load_best_give_the_best_model(finished, tmp_path):
    import keras

    import sweep
    from sweep.inputs import data
    from sweep.spec.config import DataConfig

    result, uri, _ = finished
    out = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "export", result.name, str(tmp_path / "best"), "--tracking-uri", uri, "--saved-model"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "best" / "saved_model" / "saved_model.pb").is_file()
    exported = keras.saving.load_model(tmp_path / "best" / "model.keras", safe_mode=True)
    loaded = sweep.load_best(result.name, tracking_uri=uri)
    dataset = data.load(DataConfig(**{**SWEEP["data"], "normalize": False}))  # the rows as load_digits gives them
    logs = loaded.evaluate(dataset.x_val, dataset.y_val, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(result.best.value, abs=1e-6), "the best model takes raw rows: the sweep's standardization is in it"
    np.testing.assert_allclose(exported.predict(dataset.x_val[:5], verbose=0), loaded.predict(dataset.x_val[:5], verbose=0), rtol=1e-6)


def test_warm_start_runs_the_earlier_best_first(finished, tmp_path, caplog):
    """A refined space (sgd dropped, narrower rate): earlier best configs that fit run first."""
    import sweep

    result, uri, _ = finished
    completed = result.trials[result.trials["status"] == "completed"].sort_values("value", ascending=False)
    refined = {**SWEEP, "name": "e2e-report-refined", "tracking": {}}
    refined["search"] = {
        "sampler": "tpe", "seed": 5, "trials": 3, "warm_start": result.name,
        "space": {
            "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-1, "log": True},
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        },
    }
    with caplog.at_level("WARNING", logger="sweep.warmstart"):
        second = sweep.run(refined, storage=str(tmp_path / "runs"), tracking_uri=uri, quiet=True)
    had_momentum = "param.momentum" in completed and completed["param.momentum"].notna().any()
    if had_momentum:
        assert "momentum (not in this space)" in caplog.text
    expected = [
        {"learning_rate": row["param.learning_rate"], "optimizer": row["param.optimizer"]}
        for _, row in completed.head(2).iterrows()
    ]
    first = second.trials.sort_values("number").head(len(expected))
    got = [{"learning_rate": row["param.learning_rate"], "optimizer": row["param.optimizer"]} for _, row in first.iterrows()]
    assert got == expected
    assert second.best.value >= completed["value"].iloc[0] - 0.05, "re-running the earlier best reaches about its value"
    earlier_best = completed["value"].iloc[0]
    first_curve = list(result.trials.sort_values("number")["value"])
    second_curve = list(second.trials.sort_values("number")["value"])
    first_hit = 1 + first_curve.index(earlier_best)
    second_hit = 1 + next(i for i, v in enumerate(second_curve) if v is not None and v >= earlier_best - 0.05)
    assert second_hit < first_hit or second_hit == 1, ("the refined sweep reaches the earlier best in fewer trials", first_hit, second_hit)


def test_warm_start_from_an_unknown_sweep_is_one_line(finished, tmp_path):
    import sweep
    from sweep.errors import SweepConfigError

    _, uri, _ = finished
    bad = {**SWEEP, "name": "e2e-report-bad", "search": {**SWEEP["search"], "warm_start": "no-such-sweep"}}
    with pytest.raises(SweepConfigError, match=r"search\.warm_start: expected the name of an earlier sweep or MLflow experiment"):
        sweep.run(bad, storage=str(tmp_path / "runs"), tracking_uri=uri, quiet=True)
    assert _parent(uri, "e2e-report-bad") is None, "no parent run is left behind"


# ---------------------------------------------------------------------------------------------
# the MLflow UI in a real browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keep(path: Path, name: str) -> None:
    """Copy a file to ./test-artifacts (gitignored) so CI can keep it."""
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / name)


@pytest.fixture(scope="module")
def mlflow_ui(finished, tmp_path_factory):
    """``mlflow ui`` on 127.0.0.1 against the sweep's store; yields its base URL."""
    _, uri, folder = finished
    port = _free_port()
    log = open(tmp_path_factory.mktemp("ui") / "mlflow-ui.log", "w")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder, env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, process, log=Path(log.name))
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium found (install Debian's package: apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"]
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=args, headless=True)
        yield chromium
        chromium.close()


def test_mlflow_ui_shows_the_sweep(finished, mlflow_ui, browser, tmp_path):
    from mlflow.tracking import MlflowClient

    from sweep.tracking.tracker import UI_VIEW, ui_url

    result, uri, _ = finished
    parent = _parent(uri, result.name)
    experiment_id = parent.info.experiment_id
    best_run = result.best.mlflow_run_id
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    shots: list[Path] = []

    def shot(name: str) -> None:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)
        _keep(path, f"mlflow-ui-{name}.png")

    # the experiment's training runs: the parent run (with its registered best model), then expanded
    # into its nested trial runs
    page.goto(f"{mlflow_ui}/#/experiments/{experiment_id}/runs?{UI_VIEW}", wait_until="domcontentloaded")
    parent_link = page.locator(f"a[href$='/runs/{parent.info.run_id}']").first
    parent_link.wait_for()
    page.get_by_text("e2e-digits-classifier").first.wait_for()  # the Models column: the registered best model
    page.locator("button[data-component-id*='runnamecellrenderer']").first.click()  # expand the nested runs
    child_names = [f"{result.name}-{n:04d}" for n in sorted(result.trials["number"])]
    page.get_by_text(child_names[-1], exact=True).first.wait_for()
    visible = [name for name in child_names if page.get_by_text(name, exact=True).count()]
    shot("experiment-runs")
    assert visible == child_names, f"nested trial runs shown: {visible}"
    assert page.locator(f"a[href$='/runs/{parent.info.run_id}']").count() == 1, "one parent run"
    assert page.get_by_text(f"{TRIALS + 1} matching runs").count() == 1, "the parent and its trials, nothing else"

    # sorted by the best-objective column (best_val_accuracy, descending, as the column header's
    # sort writes it into the URL): the top trial row is `sweep best`'s trial, named as the CLI names it
    best = json.loads(subprocess.run(
        [sys.executable, "-m", "sweep.cli", "best", result.name, "--tracking-uri", uri, "--json"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout)
    assert best["trial_id"] == result.best.trial_id and best["number"] == result.best.number
    assert best["trial"] == f"{best['number']:04d}" and best["run_name"] == f"{result.name}-{best['trial']}"
    sort_key = "metrics.`best_val_accuracy`"
    page.goto(
        f"{mlflow_ui}/#/experiments/{experiment_id}/runs?{UI_VIEW}&orderByKey={urllib.parse.quote(sort_key)}&orderByAsc=false",
        wait_until="domcontentloaded",
    )
    page.get_by_text(best["run_name"], exact=True).first.wait_for()  # sorted by a metric, MLflow lists runs flat
    page.get_by_text("Sort: best_val_accuracy").first.wait_for()  # the sort control names the column it sorts by
    page.set_viewport_size({"width": 1800, "height": 900})
    close = page.locator("button[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.first.click()  # the assistant panel hides the table's right-hand columns
    page.locator("button[data-component-id*='experimentviewrunscolumnselector']").first.click()
    page.get_by_text("best_val_accuracy", exact=True).last.click()  # show the column it is sorted by
    page.keyboard.press("Escape")
    page.wait_for_timeout(1000)
    rows = sorted(
        (page.get_by_text(name, exact=True).first.bounding_box()["y"], name)
        for name in child_names
        if page.get_by_text(name, exact=True).count()
    )
    shot("experiment-sorted-by-best")
    order = [name for _, name in rows]
    values = {f"{result.name}-{row.number:04d}": row.value for row in result.trials.itertuples()}
    assert order[0] == best["run_name"] or values[order[0]] == best["value"], (
        "the top trial row is sweep best's trial (or ties with it)", order, values)
    ranked = [values[name] for name in order if values[name] is not None and values[name] == values[name]]
    assert ranked == sorted(ranked, reverse=True), ("trial rows descend by best_val_accuracy", order, values)

    # a trial's val metric chart: one point per epoch
    epochs = result.best.epochs
    history = MlflowClient(uri).get_metric_history(best_run, "val_accuracy")
    assert sorted(m.step for m in history) == list(range(1, epochs + 1))
    page.goto(ui_url(mlflow_ui, experiment_id, best_run, "model-metrics"), wait_until="domcontentloaded")
    page.get_by_placeholder("Search metric charts").fill("val_accuracy")  # charts below the fold are not drawn
    page.get_by_text("(val_accuracy)").first.wait_for()  # the legend entry of the val_accuracy chart
    page.locator(".js-plotly-plot").first.wait_for()
    # the innermost block holding a plot and the val_accuracy legend entry: that metric's chart card
    chart = page.locator("div").filter(has=page.locator(".js-plotly-plot")).filter(has_text="(val_accuracy)").last
    points = chart.locator(".scatterlayer .point")
    deadline = time.time() + 30
    while points.count() < epochs and time.time() < deadline:
        time.sleep(0.5)
    shot("trial-model-metrics")
    assert points.count() == epochs, f"{points.count()} points for {epochs} epochs"

    # the best model artifact (and the report) on the parent run
    page.goto(ui_url(mlflow_ui, experiment_id, parent.info.run_id, "artifacts"), wait_until="domcontentloaded")
    for name in ("best_checkpoint", "report", "trials.csv"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text("best_checkpoint", exact=True).first.click()
    page.get_by_text("model.keras", exact=True).first.wait_for()  # inside the expanded best_checkpoint folder
    page.wait_for_timeout(500)  # let the tree settle for the screenshot
    shot("parent-artifacts")

    # the registered model version: from the best trial's run, with the `champion` alias
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("e2e-digits-classifier", "champion")
    assert version.run_id == best_run, "registered from the best trial's run (lineage)"
    page.goto(f"{mlflow_ui}/#/models/e2e-digits-classifier/versions/{version.version}?{UI_VIEW}", wait_until="domcontentloaded")
    page.get_by_text("champion").first.wait_for()
    page.get_by_text(f"trial {best['trial']} (ray {best['trial_id']})").first.wait_for()  # the description names the trial
    assert version.tags.get("sweep.trial_number") == best["trial"]
    page.wait_for_timeout(500)
    shot("model-version")
    assert all(path.stat().st_size > 10_000 for path in shots)
