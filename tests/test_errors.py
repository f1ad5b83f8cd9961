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
