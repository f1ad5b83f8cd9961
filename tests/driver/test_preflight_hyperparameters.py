"""The preflight refuses space entries that nothing reads, before any trial (issue 16 §4).

Real Keras models are built in-process (no Ray): the built-in builders, a user factory that
reads a key on one branch only, a factory that compiles itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.spec import config as config_module
from sweep.driver import preflight
from sweep.errors import SweepConfigError

USER_CODE = Path(__file__).parents[1] / "e2e" / "user_code"


def prepare(space: dict, **sections):
    raw = {"name": "hp-read", "data": {"source": "digits"}, "model": {"builder": "mlp", "args": {"units": [8]}},
           "fit": {"epochs": 2}, "objective": {"metric": "val_accuracy", "mode": "max"},
           "search": {"trials": 2, "space": space}, **sections}
    return preflight.prepare(config_module.load(raw), "sweep.yaml", (USER_CODE,))


def refused(space: dict, **sections) -> SweepConfigError:
    with pytest.raises(SweepConfigError) as err:
        prepare(space, **sections)
    return err.value


def test_a_typo_is_refused_with_what_was_read_and_a_guess():
    err = refused({"dropuot": {"type": "float", "low": 0.0, "high": 0.5}})
    assert err.key == "search.space.dropuot"
    assert "nothing reads" in err.expected and "did you mean 'dropout'?" in err.expected
    assert "units" in err.expected and "learning_rate" in err.expected  # what the mlp and the optimizer read


def test_optimizer_settings_count_only_where_the_drawn_optimizer_takes_them():
    prepare({"optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
             "momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}}})
    err = refused({"optimizer": {"type": "categorical", "choices": ["adam"]}, "momentum": {"type": "float", "low": 0.0, "high": 0.9}})
    assert err.key == "search.space.momentum"


def test_a_key_read_on_one_branch_of_a_factory_is_found():
    prepare({"arch": {"type": "categorical", "choices": ["narrow", "wide"]}, "extra": {"type": "int", "low": 1, "high": 4}},
            model={"builder": "fit_shapes:branchy"})


def test_loss_in_the_space_is_refused_when_the_factory_compiles_itself():
    err = refused({"loss": {"type": "categorical", "choices": ["binary_crossentropy", "hinge"]},
                   "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}},
                  data={"source": "fit_shapes:binary_column"}, model={"builder": "fit_shapes:sigmoid_f1"},
                  objective={"metric": "val_f1", "mode": "max"})
    assert err.key == "search.space.loss"


def test_loss_in_the_space_compiles_with_the_drawn_loss():
    prepared = prepare({"loss": {"type": "categorical", "choices": ["huber", "mae"]}}, data={"source": "diabetes"},
                       objective={"metric": "val_mae", "mode": "min"}, model={"builder": "mlp", "metrics": ["mae"], "args": {"units": [8]}})
    from sweep.inputs import models

    model = models.build(prepared.builder, {"loss": "mae"}, prepared.dataset.info, prepared.config.model)
    assert model.loss == "mae"


def test_epochs_must_fit_the_budget():
    with pytest.raises(SweepConfigError) as err:
        config_module.load({"name": "e", "data": {"source": "digits"}, "fit": {"epochs": 3},
                            "search": {"space": {"epochs": {"type": "categorical", "choices": [1, 5]}}}})
    assert err.value.key == "search.space.epochs" and "from 1 to 3" in err.value.expected


def test_an_objective_name_mlflow_cannot_record_is_refused():
    """Other such metrics are logged under a sanitized name; the objective is read back by name."""
    err = refused({"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}},
                  objective={"metric": "val_top@3", "mode": "max"}, model={"builder": "named_metrics:build"})
    assert err.key == "objective.metric"
    assert "MLflow" in err.expected and "'val_top_3'" in err.expected
