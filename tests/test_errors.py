"""sweep.errors: user mistakes cross from a Ray worker to the driver intact (pickled), and print as one line."""

from __future__ import annotations

import pickle

import sweep
from sweep.errors import InputError, SweepConfigError


def test_sweep_config_error_round_trips_through_pickle():
    for error in (SweepConfigError("sweep.yaml", "fit.epochs", "expected an integer, got 'ten'"), SweepConfigError("sweep.yaml", "", "expected valid YAML")):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is SweepConfigError and (back.file, back.key, back.expected) == (error.file, error.key, error.expected)
        assert str(back) == str(error) and "\n" not in str(back) and isinstance(back, ValueError)
    assert str(SweepConfigError("f.yaml", "k", "x")) == "f.yaml: k: x" and str(SweepConfigError("f.yaml", "", "x")) == "f.yaml: x"


def test_input_error_round_trips_through_pickle():
    error = InputError("data.source", "expected a function, got 3")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is InputError and (back.key, back.expected) == ("data.source", "expected a function, got 3")
    assert str(back) == "data.source: expected a function, got 3" and isinstance(back, ValueError)


def test_the_public_api_still_exports_sweep_config_error():
    assert sweep.SweepConfigError is SweepConfigError and "SweepConfigError" in sweep.__all__


def test_an_unexpected_error_in_a_command_is_one_line_and_its_traceback_a_file(tmp_path, monkeypatch, capsys):
    """A failure no check foresaw (here Ray Tune's TuneError, whose message is a whole traceback,
    as when a trial's result lacked the objective) prints one line: what failed, its last line,
    and the file that keeps the full traceback."""
    import argparse

    from ray.tune.error import TuneError

    from sweep import cli

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    try:
        raise TuneError("Traceback (most recent call last):\n  File \"tune_controller.py\", line 1686\nValueError: Trial returned a result which did not include `val_accuracy`")
    except TuneError as exc:
        code = cli._unexpected(exc, argparse.Namespace(command="run"))
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED and err.count("\n") == 1, err
    assert err.startswith("error: sweep run failed unexpectedly: ValueError: Trial returned a result which did not include `val_accuracy`")
    assert "if the sweep had started, its records are closed and the same command continues it" in err
    (written,) = tmp_path.glob("sweep-error-*.txt")
    assert f"the full traceback is in {written}" in err
    assert "tune_controller.py" in written.read_text() and "test_errors.py" in written.read_text()
