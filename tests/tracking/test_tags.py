"""The MLflow contract has one home: every ``sweep.*`` tag is named in sweep/tracking/tags.py and
nowhere else in the package, and the writer has a handler for every kind of operation."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import sweep
from sweep.tracking import tags
from sweep.tracking.writer import _APPLY, BARRIERS, PIPE_ONLY, OpKind, _checked

PACKAGE = Path(sweep.__file__).parent
TAGS_FILE = PACKAGE / "tracking" / "tags.py"
# a whole string that reads like a tag, or a tag's start in an f-string (f"sweep.trials.{status}")
TAG_LIKE = re.compile(r"sweep\.(?:[a-z_]+(?:\.[a-z_]+)*\.?)?")
NOT_TAGS = {"sweep.schema.json"}  # the JSON Schema's $id (spec/docs.py), a file name

# The public contract: these names must not change (MLflow queries, the UI, resume read them).
CONTRACT = {
    "sweep.role", "sweep.name", "sweep.trial_id", "sweep.trial_number", "sweep.status", "sweep.epochs", "sweep.stopped_epoch",
    "sweep.reason", "sweep.best_value", "sweep.best_epoch", "sweep.checkpoint", "sweep.checkpoint_epoch",
    "sweep.checkpoint_evicted", "sweep.resumed_from_epoch", "sweep.resumed_as", "sweep.retries", "sweep.retry_reason", "sweep.retried_from_epoch",
    "sweep.node_id", "sweep.node_ip", "sweep.cpus", "sweep.gpus", "sweep.cuda_visible_devices", "sweep.file",
    "sweep.storage_root", "sweep.trials_requested", "sweep.config_hash", "sweep.data", "sweep.data.task", "sweep.data.labels", "sweep.data.inputs",
    "sweep.data.outputs", "sweep.data.prepared", "sweep.metric_names", "sweep.param_names", "sweep.resumed", "sweep.metric", "sweep.mode",
    "sweep.storage", "sweep.trials.", "sweep.best_trial_id", "sweep.best_run_id", "sweep.best_epochs",
    "sweep.best_checkpoint", "sweep.finish_error", "sweep.parent_run_id",
}


def _is_module(text: str) -> bool:
    """``sweep.tracking.writer`` (``python -m``, a lazy import's target) names a module, not a tag."""
    parts = text.split(".")
    if not all(parts):
        return False
    path = PACKAGE.parent.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def tag_literals(source: str) -> list[tuple[int, str]]:
    """The string literals (f-string pieces included) of ``source`` that spell a ``sweep.*`` tag,
    as (line, text). Logger names (``logging.getLogger("sweep.x")``), module paths and prose
    (a docstring that mentions ``sweep.status``: not the whole string) are not tags."""
    tree = ast.parse(source)
    loggers = {
        id(arg)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and "getLogger" in (getattr(node.func, "attr", None), getattr(node.func, "id", None))
        for arg in node.args
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in loggers
        and TAG_LIKE.fullmatch(node.value) and node.value not in NOT_TAGS and not _is_module(node.value)
    ]


def test_the_check_finds_tags_and_only_tags():
    source = '''
"""A docstring naming the ``sweep.status`` tag and ``sweep.tracking.writer``."""
import logging
log = logging.getLogger("sweep.tracking")
A = {"sweep.best_value": 1}
B = f"sweep.trials.{status}"
C = "sweep.tracking.writer"
D = f"sweep.{name}"
E = "sweep.data.task"
'''
    assert sorted(text for _, text in tag_literals(source)) == ["sweep.", "sweep.best_value", "sweep.data.task", "sweep.trials."]


def test_no_sweep_tag_is_spelt_outside_tags_py():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py")) if path != TAGS_FILE
        for line, text in tag_literals(path.read_text())
    ]
    assert not found, "name these tags in sweep/tracking/tags.py and import them:\n" + "\n".join(found)


def test_tags_py_names_the_contract_once():
    values = [value for name, value in vars(tags).items() if name.endswith(("_TAG", "_PREFIX"))]
    assert len(values) == len(set(values)), "two constants for one tag"
    assert set(values) == CONTRACT
    assert tags.trials_tag("completed") == "sweep.trials.completed"
    assert [text for _, text in tag_literals(TAGS_FILE.read_text())], "the check reads tags.py's literals too"


def test_the_writer_has_a_handler_for_every_kind_of_operation():
    assert set(_APPLY) | set(BARRIERS) | set(PIPE_ONLY) == set(OpKind), "a kind nobody applies would be dropped"
    assert not set(_APPLY) & set(BARRIERS), "the writer's loop acts on barriers itself"
    assert all(callable(handler) for handler in _APPLY.values())
    assert {OpKind(kind.value) for kind in OpKind} == set(OpKind), "the pipe carries the value"


def test_a_kind_given_as_text_is_refused_where_it_is_sent():
    assert _checked(OpKind.TAGS) is OpKind.TAGS
    with pytest.raises(TypeError):
        _checked("tags")
