"""A sqlite MLflow store laid out like a sweep, without Ray or Keras, and readers of the report's
HTML and PNGs: shared by the report, CLI and browser tests (tests/ is on sys.path via conftest)."""

from __future__ import annotations

import struct
from html.parser import HTMLParser
from pathlib import Path

from sweep.tracking import tracker as tracking
from sweep.tracking.client import client as tracking_client
from sweep.tracking.tags import NAME_TAG, ROLE_TAG, STATUS_TAG, TRIAL_TAG

PARAMS = [
    {"learning_rate": "0.01", "optimizer": "sgd", "momentum": "0.9"},
    {"learning_rate": "0.001", "optimizer": "adam"},
    {"learning_rate": "0.1", "optimizer": "sgd", "momentum": "0.5"},
    {"learning_rate": "0.0003", "optimizer": "rmsprop"},
    {"learning_rate": "0.03", "optimizer": "adam"},
]
CURVES = [[0.5, 0.7, 0.8], [0.3, 0.4], [0.6, 0.75, 0.85], [0.2], [0.55, 0.65, 0.7]]


def _fake_parent(client, experiment_id: str, name: str):
    """The parent run, tagged as MLflowTracker tags it."""
    return client.create_run(experiment_id, tags={ROLE_TAG: "parent", NAME_TAG: name, "sweep.metric": "val_accuracy", "sweep.mode": "max"})


def _fake_trial(client, experiment_id: str, parent, name: str, number: int, status: str, curve: list[float], params: dict) -> str:
    """One child run with its params and per-epoch val_accuracy; ended trials carry their best value."""
    from mlflow.entities import Metric

    tags = {
        "mlflow.parentRunId": parent.info.run_id,
        ROLE_TAG: "trial",
        NAME_TAG: name,
        TRIAL_TAG: f"t{number}",
        "sweep.trial_number": str(number),
        STATUS_TAG: status,
    }
    if status != "running":
        tags.update({"sweep.epochs": str(len(curve)), "sweep.best_value": repr(max(curve)), "sweep.best_epoch": str(curve.index(max(curve)) + 1)})
    run = client.create_run(experiment_id, tags=tags, run_name=f"{name}-{number:04d}")  # as the tracker names it
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    client.log_batch(run.info.run_id, metrics=[Metric("val_accuracy", v, 0, step) for step, v in enumerate(curve, start=1)])
    if status != "running":
        client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def make_sweep(uri: str, name: str = "fake", curves: list[list[float]] = CURVES) -> str:
    """A parent run and one child per trial, tagged as MLflowTracker tags them."""
    client = tracking_client(uri)
    experiment_id = tracking.ensure_experiment(client, uri, name)
    parent = _fake_parent(client, experiment_id, name)
    for number, (params, curve) in enumerate(zip(PARAMS, curves)):
        status = "completed" if len(curve) == 3 else "stopped_early"
        _fake_trial(client, experiment_id, parent, name, number, status, curve, params)
    client.set_terminated(parent.info.run_id, "FINISHED")
    return parent.info.run_id


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


class Page(HTMLParser):
    """Collects images, table rows and checks that every opened tag is closed in order."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: dict[str, str] = {}
        self.rows: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images[attrs.get("id", "")] = attrs.get("src", "")
        if tag == "tr" and "data-trial-id" in attrs:
            self.rows.append(attrs["data-trial-id"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def parse(page: Path) -> Page:
    parser = Page()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
    return parser
