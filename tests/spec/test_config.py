"""sweep.config: the sweep file format, defaults, overrides, paths and one-line errors."""

from __future__ import annotations

import json

from pathlib import Path

import pytest

from sweep.errors import SweepConfigError
from sweep.spec.config import (
    AshaConfig,
    CategoricalParam,
    FloatParam,
    SweepConfig,
    condition_order,
    load,
)

FULL = """\
name: digits-mlp
data: {source: digits, validation_split: 0.2}
model: {builder: mlp, args: {units: [128, 128]}, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 27, shuffle: true}
objective: {metric: val_accuracy, mode: max}
search:
  sampler: tpe
  seed: 0
  trials: 32
  space:
    learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    batch_size: {type: categorical, choices: [16, 32, 64, 128]}
    optimizer: {type: categorical, choices: [adam, sgd, rmsprop]}
    momentum: {type: float, low: 0.0, high: 0.99, when: {optimizer: sgd}}
scheduler: {type: asha, grace_period: 1, reduction_factor: 3}
resources: {cpus_per_trial: 1, gpus_per_trial: 0}
tracking: {uri: null, experiment: null}
"""

MINIMAL = """\
name: tiny
data: {source: digits}
search:
  space:
    units: {type: int, low: 8, high: 64}
"""


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_sweep_file_loads_with_its_values(tmp_path):
    config = load(write(tmp_path, FULL))
    assert isinstance(config, SweepConfig)
    assert config.name == "digits-mlp" and config.experiment == "digits-mlp"
    assert config.data.source == "digits" and config.data.validation_split == 0.2
    assert config.model.builder == "mlp" and config.model.args == {"units": [128, 128]}
    assert config.model.loss == "sparse_categorical_crossentropy" and config.model.metrics == ["accuracy"]
    assert config.fit.epochs == 27 and config.fit.shuffle is True and config.max_epochs == 27
    assert (config.objective.metric, config.objective.mode) == ("val_accuracy", "max")
    search = config.search
    assert (search.sampler, search.seed, search.trials, search.max_concurrent) == ("tpe", 0, 32, None)
    lr = search.space["learning_rate"]
    assert isinstance(lr, FloatParam) and (lr.low, lr.high, lr.log, lr.step) == (1e-4, 1e-1, True, None)
    assert isinstance(search.space["batch_size"], CategoricalParam)
    assert search.space["batch_size"].choices == [16, 32, 64, 128]
    assert search.space["momentum"].when == {"optimizer": "sgd"}
    assert condition_order(search.space).index("optimizer") < condition_order(search.space).index("momentum")
    assert isinstance(config.scheduler, AshaConfig)
    assert (config.scheduler.grace_period, config.scheduler.reduction_factor, config.scheduler.max_t) == (1, 3, None)
    assert (config.resources.cpus_per_trial, config.resources.gpus_per_trial) == (1, 0)
    assert config.tracking.uri is None and config.tracking.experiment is None


def test_defaults_of_a_minimal_file(tmp_path):
    config = load(write(tmp_path, MINIMAL))
    assert config.data.validation_split == 0.2 and config.data.normalize is None and config.data.encode_labels is None and config.data.seed == 0
    assert config.model.builder == "mlp" and config.model.args == {} and config.model.loss is None
    assert config.fit.epochs == 10 and config.fit.batch_size == 32 and config.fit.callbacks == []
    assert (config.objective.metric, config.objective.mode) == ("val_loss", "min")
    assert (config.search.sampler, config.search.seed, config.search.trials) == ("tpe", None, 16)
    units = config.search.space["units"]
    assert (units.low, units.high, units.step, units.log, units.when) == (8, 64, 1, False, None)
    assert isinstance(config.scheduler, AshaConfig) and config.scheduler.grace_period == 1
    assert config.resources.cpus_per_trial == 1 and config.resources.gpus_per_trial == 0
    assert config.tracking.uri is None


def test_overrides_apply_by_alias_and_dotted_key(tmp_path):
    path = write(tmp_path, FULL)
    config = load(path, {"trials": 3, "fit.epochs": 2, "seed": None, "scheduler.grace_period": 2})
    assert config.search.trials == 3 and config.fit.epochs == 2
    assert config.search.seed == 0  # None overrides are ignored (CLI flags not given)
    assert config.scheduler.grace_period == 2
    config = load(path, {"epochs": 5, "tracking_uri": "sqlite:///x.db", "experiment": "e", "search.sampler": "random"})
    assert config.fit.epochs == 5 and config.tracking.uri == "sqlite:///x.db" and config.experiment == "e"
    assert config.search.sampler == "random"
    assert load(path).search.trials == 32  # the file itself is unchanged


def test_overrides_are_validated_like_the_file(tmp_path):
    path = write(tmp_path, FULL)
    with pytest.raises(SweepConfigError) as info:
        load(path, {"fit.epochs": 0})
    assert str(info.value) == f"{path} (override fit.epochs=0): fit.epochs: expected a value >= 1, got 0"


@pytest.mark.parametrize("overrides, source, key", [
    ({"fit.epoch": 3}, "(override fit.epoch=3)", "fit.epoch"),  # a key the file never had
    ({"epochs": "six"}, "(override epochs='six')", "fit.epochs"),  # an alias, as `--epochs` passes it
    ({"scheduler.type": "fifo"}, "(with override scheduler.type='fifo')", "scheduler.grace_period"),  # the file's key, refused because of the override
])
def test_an_error_an_override_caused_names_the_override(tmp_path, overrides, source, key):
    path = write(tmp_path, FULL)
    with pytest.raises(SweepConfigError) as info:
        load(path, overrides)
    assert str(info.value).startswith(f"{path} {source}: {key}: "), str(info.value)


def test_an_override_that_set_the_bound_an_entry_breaks_is_named(tmp_path):
    """`--epochs 2` under a searched epochs of [1, 2, 4] was refused naming only the file, which says fit.epochs: 4."""
    path = write(tmp_path, add_param("epochs: {type: categorical, choices: [1, 2, 4]}").replace("epochs: 27", "epochs: 4").replace("grace_period: 1, ", ""))
    with pytest.raises(SweepConfigError) as info:
        load(path, {"epochs": 2})
    assert str(info.value).startswith(f"{path} (with override epochs=2): search.space.epochs: expected whole numbers of epochs from 1 to 2"), str(info.value)


def test_an_override_of_a_searched_setting_fixes_it_and_says_so(tmp_path, caplog):
    """``--set fit.batch_size=64`` on a file that searches batch_size (the README's own example)
    was silently ignored: every trial drew its own batch size. Now the override wins, in one line."""
    path = write(tmp_path, FULL)
    with caplog.at_level("WARNING", logger="sweep.spec.config"):
        config = load(path, {"fit.batch_size": 64})
    assert config.search.space["batch_size"].choices == [64]  # a param of every trial, shown by `sweep best`
    assert config.search.space["batch_size"].when is None
    assert caplog.messages == [f"{path}: override fit.batch_size=64 fixes search.space.batch_size to that one value in every trial"]
    caplog.clear()
    load(path, {"fit.batch_size": 64}, quiet=True)  # the CLI's second read of the same file says nothing
    assert caplog.messages == []
    # an entry a when: condition names stays, as that one value, so the condition still holds
    conditional = FULL.replace("when: {optimizer: sgd}", "when: {batch_size: 16}")
    config = load(write(tmp_path, conditional), {"fit.batch_size": 16})
    assert config.search.space["batch_size"].choices == [16]
    assert config.search.space["momentum"].when == {"batch_size": 16}
    # the file's own fit.batch_size beside a searched one is unchanged: the space wins, as documented
    assert "batch_size" in load(path).search.space


def test_an_override_named_in_an_error_never_shows_a_password(tmp_path):
    path = write(tmp_path, FULL.replace("experiment: null}", "experiment: ../escape}"))  # the file's error, in the overridden section
    with pytest.raises(SweepConfigError) as info:
        load(path, {"tracking_uri": "http://ann:hunter2@127.0.0.1:5000"})
    assert "(with override tracking_uri='http://ann:***@127.0.0.1:5000')" in str(info.value), str(info.value)
    assert "hunter2" not in str(info.value)


def test_an_error_in_the_file_names_only_the_file_even_with_overrides(tmp_path):
    path = write(tmp_path, FULL.replace("epochs: 27", "epochs: 0"))
    with pytest.raises(SweepConfigError) as info:
        load(path, {"trials": 3})
    assert str(info.value) == f"{path}: fit.epochs: expected a value >= 1, got 0"


def test_data_paths_resolve_against_the_sweep_files_folder(tmp_path, monkeypatch):
    sub = tmp_path / "sweeps"
    sub.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for kind, rest, expected in [
        ("npz", "data/train.npz", sub / "data" / "train.npz"),
        ("csv", "../table.csv", tmp_path / "table.csv"),
        ("npz", str(tmp_path / "abs.npz"), tmp_path / "abs.npz"),
    ]:
        text = MINIMAL.replace("{source: digits}", f"{{source: '{kind}:{rest}'" + (", target: y}" if kind == "csv" else "}"))
        config = load(write(sub, text))
        assert config.data.source == f"{kind}:{expected.resolve()}"
    # named sources and user functions are left alone
    text = MINIMAL.replace("{source: digits}", "{source: 'my_data:load'}")
    assert load(write(sub, text)).data.source == "my_data:load"


def test_a_mapping_resolves_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = {"name": "m", "data": {"source": "npz:x.npz"}, "search": {"space": {"a": {"type": "int", "low": 1, "high": 2}}}}
    assert load(raw).data.source == f"npz:{(tmp_path / 'x.npz').resolve()}"
    assert raw["data"]["source"] == "npz:x.npz"  # not mutated


def test_model_builder_forms(tmp_path):
    for builder in ("mlp", "cnn", "my_models:build", "pkg.mod:factory.build"):
        text = FULL.replace("builder: mlp", f"builder: '{builder}'")
        assert load(write(tmp_path, text)).model.builder == builder


def test_conditions_on_int_parents_and_lists(tmp_path):
    text = MINIMAL + "    width2: {type: int, low: 8, high: 64, when: {units: [8, 16]}}\n"
    config = load(write(tmp_path, text))
    assert config.search.space["width2"].when == {"units": [8, 16]}


def test_error_is_one_line_and_carries_its_parts(tmp_path):
    path = write(tmp_path, FULL.replace("epochs: 27", "epochs: zero"))
    with pytest.raises(SweepConfigError) as info:
        load(path)
    error = info.value
    assert (error.file, error.key, error.expected) == (str(path), "fit.epochs", "expected an integer, got 'zero'")
    assert "\n" not in str(error) and info.value.__cause__ is None and info.value.__suppress_context__


# ---------------------------------------------------------------------------------------------
# bad sweep files: (id, YAML text or a transformation of FULL, the exact one-line error)


def sub(old: str, new: str) -> str:
    assert old in FULL, old
    return FULL.replace(old, new)


def add_param(line: str) -> str:
    return FULL.replace("scheduler:", f"    {line}\nscheduler:", 1)


LR = "learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}"
MOMENTUM = "momentum: {type: float, low: 0.0, high: 0.99, when: {optimizer: sgd}}"

BAD = [
    # search-space values the trials would fail on one by one, or the preflight with a traceback
    ("learning-rate-choice-not-a-number", sub("    learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}", "    learning_rate: {type: categorical, choices: [fast, 0.01]}"),
     "search.space.learning_rate.choices.0: expected a number (a learning rate), got 'fast'"),
    ("duplicate-choice", sub("choices: [16, 32, 64, 128]", "choices: [16, 32, 16]"), "search.space.batch_size.choices.2: expected distinct choices, but 16 is given twice"),
    ("duplicate-choice-string", add_param("act: {type: categorical, choices: [relu, tanh, relu]}"),
     "search.space.act.choices.2: expected distinct choices, but 'relu' is given twice"),
    ("batch-size-choices-as-strings", sub("choices: [16, 32, 64, 128]", "choices: ['32', '64']"), "search.space.batch_size.choices.0: expected a number (a batch size), got '32'"),
    ("nan-bound", sub("low: 1.0e-4, high: 1.0e-1", "low: .nan, high: 1.0e-1"), "search.space.learning_rate.low: expected a finite number, got .nan"),
    ("units-zero", sub("    learning_rate:", "    units: {type: int, low: 0, high: 8}\n    learning_rate:"), "search.space.units.low: expected a positive integer (a layer width), got 0"),
    # a fit()/compile() word in the space, or a key in the wrong section, points to where it is set
    ("validation-split-in-space", sub("    learning_rate:", "    validation_split: {type: float, low: 0.1, high: 0.3}\n    learning_rate:"),
     "search.space.validation_split: expected a hyperparameter, got 'validation_split', which is a fixed setting of fit() or compile(): set data.validation_split"),
    ("validation-split-under-fit", sub("fit: {epochs: 27, shuffle: true}", "fit: {epochs: 27, shuffle: true, validation_split: 0.3}"),
     "fit.validation_split: unknown key (expected one of: epochs, batch_size, shuffle, steps_per_execution, callbacks, class_weight, steps_per_epoch, "
     "validation_steps, validation_batch_size, validation_freq, reuse_model, reuse_model_mb; validation_split is set under data: (data.validation_split))"),
    # the file itself
    ("yaml-syntax", "name: [digits\n", "expected valid YAML, line 1, column 7: a '[' that is not closed with ']'; PyYAML says: while parsing a flow sequence, expected ',' or ']', but got '<stream end>' (at line 2, column 1)"),
    (
        "yaml-unclosed-quote",
        'name: "rel-quote\n' + FULL.split("\n", 1)[1],
        "expected valid YAML, line 1, column 7: a quote that is not closed; PyYAML says: while scanning a quoted scalar, found unexpected end of stream (at line 18, column 1)",
    ),
    ("yaml-unclosed-brace", sub("fit: {epochs: 27, shuffle: true}", "fit: {epochs: 27, shuffle: true"), "expected valid YAML, line 4, column 6: a '{' that is not closed with '}'; PyYAML says: while parsing a flow mapping, expected ',' or '}', but got ':' (at line 5, column 10)"),
    ("latin1-file", "# réglages du sweep (café)\n".encode("latin-1") + FULL.encode(), "expected a UTF-8 text file, got byte 0xe9 at position 3 (save it as UTF-8)"),
    ("cp1252-quote", FULL.encode() + "# it\u2019s\n".encode("cp1252"), f"expected a UTF-8 text file, got byte 0x92 at position {len(FULL) + 4} (save it as UTF-8)"),
    ("truncated-inside-a-character", (FULL + "# café").encode()[:-1], f"expected a UTF-8 text file, got one that ends inside a character at position {len(FULL) + 5} (truncated?)"),
    ("truncated-mid-mapping", FULL[: FULL.index("reduction_factor")], "expected valid YAML, line 15, column 42: expected the node content, but found '<stream end>'"),
    ("nul-byte", FULL + "\0", f"expected valid YAML, position {len(FULL)}: unacceptable character #x0000: special characters are not allowed"),
    # a key twice: PyYAML keeps the last silently
    ("duplicate-top-level-key", FULL + "name: other\n", "name: expected each key once, got it again at line 18 (first at line 1)"),
    ("duplicate-section", FULL + "fit: {epochs: 3}\n", "fit: expected each key once, got it again at line 18 (first at line 4)"),
    ("duplicate-fit-key", sub("epochs: 27, shuffle: true", "epochs: 27, shuffle: true, epochs: 3"), "fit.epochs: expected each key once, got it again at line 4 (first at line 4)"),
    ("duplicate-space-entry", add_param("optimizer: {type: categorical, choices: [sgd]}"), "search.space.optimizer: expected each key once, got it again at line 15 (first at line 13)"),
    ("duplicate-param-key", sub("low: 1.0e-4, high: 1.0e-1", "low: 1.0e-4, high: 1.0e-1, low: 0.5"), "search.space.learning_rate.low: expected each key once, got it again at line 11 (first at line 11)"),
    ("duplicate-in-list-item", sub("shuffle: true", "shuffle: true, callbacks: [{early_stopping: {patience: 1, patience: 2}}]"), "fit.callbacks.0.early_stopping.patience: expected each key once, got it again at line 4 (first at line 4)"),
    # true/false where a number is expected (pydantic would read 1 / 0)
    ("bool-as-epochs", sub("epochs: 27", "epochs: true"), "fit.epochs: expected an integer, got true"),
    ("bool-as-trials", sub("trials: 32", "trials: true"), "search.trials: expected an integer, got true"),
    ("bool-as-seed", sub("seed: 0", "seed: false"), "search.seed: expected an integer, got false"),
    ("bool-as-float-low", sub("low: 1.0e-4", "low: true"), "search.space.learning_rate.low: expected a number, got true"),
    ("bool-as-float-high", sub("high: 1.0e-1", "high: true"), "search.space.learning_rate.high: expected a number, got true"),
    ("bool-as-int-low", add_param("units: {type: int, low: false, high: 64}"), "search.space.units.low: expected an integer, got false"),
    ("bool-as-int-step", add_param("units: {type: int, low: 8, high: 64, step: true}"), "search.space.units.step: expected an integer, got true"),
    ("bool-as-float-step", sub(LR, "learning_rate: {type: float, low: 0.1, high: 0.5, step: true}"), "search.space.learning_rate.step: expected a number, got true"),
    ("bool-as-validation-split", sub("validation_split: 0.2", "validation_split: true"), "data.validation_split: expected a number, got true"),
    ("bool-as-batch-size", sub("shuffle: true", "shuffle: true, batch_size: true"), "fit.batch_size: expected an integer, got true"),
    ("bool-as-steps-per-execution", sub("shuffle: true", "shuffle: true, steps_per_execution: true"), "fit.steps_per_execution: expected an integer, got true"),
    ("bool-as-class-weight", sub("shuffle: true", "shuffle: true, class_weight: {0: 1.0, 1: true}"), "fit.class_weight.1: expected a number, got true"),
    ("bool-as-cpus", sub("cpus_per_trial: 1", "cpus_per_trial: true"), "resources.cpus_per_trial: expected a number, got true"),
    ("bool-as-gpus", sub("gpus_per_trial: 0", "gpus_per_trial: false"), "resources.gpus_per_trial: expected a number, got false"),
    ("bool-as-custom-resource", sub("gpus_per_trial: 0}", "gpus_per_trial: 0, custom: {tpu: true}}"), "resources.custom.tpu: expected a number, got true"),
    ("bool-as-quota", sub("gpus_per_trial: 0}", "gpus_per_trial: 0, checkpoint_quota_mb: true}"), "resources.checkpoint_quota_mb: expected a number, got true"),
    ("bool-as-grace-period", sub("grace_period: 1", "grace_period: true"), "scheduler.grace_period: expected an integer, got true"),
    ("bool-as-reduction-factor", sub("reduction_factor: 3", "reduction_factor: true"), "scheduler.reduction_factor: expected a number, got true"),
    ("bool-as-loss-weight", sub("metrics: [accuracy]", "metrics: [accuracy], loss_weights: [1.0, true]"), "model.loss_weights.1: expected a number, got true"),
    ("bool-as-samples", sub("validation_split: 0.2", "validation_split: 0.2, samples: true"), "data.samples: expected an integer, got true"),
    ("bool-as-max-retries", FULL + "failure: {max_retries: true}\n", "failure.max_retries: expected an integer, got true"),
    ("bool-as-max-concurrent", sub("trials: 32", "trials: 32\n  max_concurrent: true"), "search.max_concurrent: expected an integer, got true"),
    # names that become paths
    ("name-too-long", sub("name: digits-mlp", "name: " + "n" * 300), "name: expected at most 100 characters, got 300"),
    ("experiment-parent-folder", sub("experiment: null", "experiment: '../escaped'"), "tracking.experiment: expected a name that stays inside the store's artifact folder, got '../escaped' (a '..' or '.' path part)"),
    ("experiment-deep-parent", sub("experiment: null", "experiment: 'a/../../etc/x'"), "tracking.experiment: expected a name that stays inside the store's artifact folder, got 'a/../../etc/x' (a '..' or '.' path part)"),
    ("experiment-absolute", sub("experiment: null", "experiment: /some/where"), "tracking.experiment: expected a name that stays inside the store's artifact folder, got '/some/where' (an absolute path)"),
    ("experiment-home", sub("experiment: null", "experiment: ~/x"), "tracking.experiment: expected a name that stays inside the store's artifact folder, got '~/x' (an absolute path)"),
    ("experiment-windows-drive", sub("experiment: null", "experiment: 'C:/x'"), "tracking.experiment: expected a name that stays inside the store's artifact folder, got 'C:/x' (an absolute path)"),
    ("experiment-backslash", sub("experiment: null", "experiment: 'a\\b'"), "tracking.experiment: expected a name that stays inside the store's artifact folder, got 'a\\\\b' (a backslash)"),
    ("experiment-dot", sub("experiment: null", "experiment: '.'"), "tracking.experiment: expected a name that stays inside the store's artifact folder, got '.' (a '..' or '.' path part)"),
    ("experiment-blank", sub("experiment: null", "experiment: '  '"), "tracking.experiment: expected a name that stays inside the store's artifact folder, got '  ' (it is empty)"),
    ("experiment-control-character", sub("experiment: null", 'experiment: "a\\tb"'), "tracking.experiment: expected a name that stays inside the store's artifact folder, got 'a\\tb' (a control character)"),
    ("registered-model-slash", sub("experiment: null", "experiment: null, registered_model: team/digits"), "tracking.registered_model: expected a model name without '/' or ':' (MLflow's registry rule), got 'team/digits'"),
    ("registered-model-parent-folder", sub("experiment: null", "experiment: null, registered_model: ../m"), "tracking.registered_model: expected a name that stays inside the store's artifact folder, got '../m' (a '..' or '.' path part)"),
    # tracking URIs
    ("uri-without-scheme", sub("uri: null", "uri: mlflow.db"), "tracking.uri: expected a URI with a scheme (sqlite:///FILE, http://HOST:PORT, ...), got 'mlflow.db': did you mean 'sqlite:///mlflow.db'?"),
    ("uri-a-folder", sub("uri: null", "uri: ./mlruns"), "tracking.uri: expected a URI with a scheme (sqlite:///FILE, http://HOST:PORT, ...), got './mlruns': did you mean 'sqlite:///mlruns/mlflow.db'?"),
    ("uri-absolute-db-path", sub("uri: null", "uri: /data/runs.sqlite"), "tracking.uri: expected a URI with a scheme (sqlite:///FILE, http://HOST:PORT, ...), got '/data/runs.sqlite': did you mean 'sqlite:////data/runs.sqlite'?"),
    ("uri-empty", sub("uri: null", "uri: ''"), "tracking.uri: expected a tracking URI such as sqlite:///mlflow.db or http://HOST:PORT, got ''"),
    ("yaml-tab", "name: a\n\tdata: 1\n", "expected valid YAML, line 2, column 1: indent with spaces, not tabs; PyYAML says: found character '\\t' that cannot start any token"),
    ("yaml-key-indented-deeper", "name: a\ndata:\n  source: synthetic\n   samples: 100\n",
     "expected valid YAML, line 4, column 11: a key indented deeper than the keys above it, or a value holding ': ' that needs quotes; PyYAML says: mapping values are not allowed here"),
    ("yaml-key-indented-less", "name: a\ndata:\n    source: synthetic\n  samples: 100\n",
     "expected valid YAML, line 4, column 3: a line indented less or more than the keys beside it; PyYAML says: expected <block end>, but found '<block mapping start>'"),
    ("yaml-key-without-colon", "name: a\ndata\nmodel: {builder: mlp}\n",
     "expected valid YAML, line 2, column 1: a key without ':' after it; PyYAML says: while scanning a simple key, could not find expected ':' (at line 3, column 1)"),
    ("empty-file", "", "expected a mapping of sections, got an empty file"),
    ("comments-only", "# nothing here\n", "expected a mapping of sections, got an empty file"),
    ("top-level-list", "- name: a\n", "expected a mapping of sections, got a list [{name: a}]"),
    ("top-level-string", "digits\n", "expected a mapping of sections, got a string 'digits'"),
    # keys
    (
        "unknown-top-level-key",
        FULL + "trainer: {}\n",
        "trainer: unknown key (expected one of: name, data, model, fit, objective, search, scheduler, resources, tracking, failure)",
    ),
    ("unknown-fit-key", sub("epochs: 27", "epoch: 27"), "fit.epoch: unknown key (expected one of: epochs, batch_size, shuffle, steps_per_execution, callbacks, class_weight, steps_per_epoch, validation_steps, validation_batch_size, validation_freq, reuse_model, reuse_model_mb; did you mean 'epochs'?)"),
    (
        "unknown-param-key",
        sub(LR, "learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, hi: 1.0e-1}"),
        "search.space.learning_rate.hi: unknown key (expected one of: type, low, high, log, step, when)",
    ),
    (
        "unknown-scheduler-key",
        sub("grace_period: 1, ", "grace: 1, "),
        "scheduler.grace: unknown key (expected one of: type, grace_period, reduction_factor, max_t)",
    ),
    (
        "key-of-another-scheduler",
        sub("type: asha, grace_period: 1", "type: hyperband, grace_period: 1"),
        "scheduler.grace_period: unknown key (expected one of: type, reduction_factor, max_t)",
    ),
    ("missing-name", sub("name: digits-mlp\n", ""), "name: required key is missing"),
    ("missing-data", sub("data: {source: digits, validation_split: 0.2}\n", ""), "data: required key is missing"),
    ("missing-source", sub("source: digits, ", ""), "data.source: required key is missing"),
    ("missing-space", MINIMAL.replace("  space:\n    units: {type: int, low: 8, high: 64}\n", "  trials: 3\n"), "search.space: required key is missing"),
    ("empty-space", MINIMAL.replace("\n    units: {type: int, low: 8, high: 64}", " {}"), "search.space: expected at least one parameter, got an empty space"),
    ("null-space", MINIMAL.replace("\n    units: {type: int, low: 8, high: 64}", ""), "search.space: expected at least one parameter, got an empty space"),
    ("space-is-a-list", MINIMAL.replace("\n    units: {type: int, low: 8, high: 64}", " [units]"), "search.space: expected a mapping, got [units]"),
    ("section-not-a-mapping", sub("fit: {epochs: 27, shuffle: true}", "fit: 27"), "fit: expected a mapping, got 27"),
    # values
    ("name-characters", sub("name: digits-mlp", "name: 'digits mlp!'"), "name: expected letters, digits, '.', '_' or '-' (starting with a letter or digit), got 'digits mlp!'"),
    ("name-not-a-string", sub("name: digits-mlp", "name: [a]"), "name: expected a string, got [a]"),
    ("epochs-wrong-type", sub("epochs: 27", "epochs: ten"), "fit.epochs: expected an integer, got 'ten'"),
    ("epochs-fraction", sub("epochs: 27", "epochs: 2.5"), "fit.epochs: expected an integer, got 2.5"),
    ("epochs-zero", sub("epochs: 27", "epochs: 0"), "fit.epochs: expected a value >= 1, got 0"),
    ("shuffle-not-bool", sub("shuffle: true", "shuffle: sometimes"), "fit.shuffle: expected true or false, got 'sometimes'"),
    ("trials-zero", sub("trials: 32", "trials: 0"), "search.trials: expected a value >= 1, got 0"),
    ("validation-split-too-big", sub("validation_split: 0.2", "validation_split: 1.5"), "data.validation_split: expected a value < 1, got 1.5"),
    ("validation-split-zero", sub("validation_split: 0.2", "validation_split: 0"), "data.validation_split: expected a value > 0, got 0"),
    (
        "bad-data-source",
        sub("source: digits", "source: mnist"),
        "data.source: expected one of digits, diabetes, synthetic, npz:PATH, csv:PATH, keras:NAME or package.module:function, got 'mnist'",
    ),
    (
        "data-source-without-path",
        sub("source: digits", "source: 'npz:'"),
        "data.source: expected one of digits, diabetes, synthetic, npz:PATH, csv:PATH, keras:NAME or package.module:function, got 'npz:'",
    ),
    ("bad-model-builder", sub("builder: mlp", "builder: resnet"), "model.builder: expected mlp, cnn or package.module:function, got 'resnet'"),
    ("model-builder-typo", sub("builder: mlp", "builder: mlpp"), "model.builder: expected mlp, cnn or package.module:function, got 'mlpp'; did you mean 'mlp'?"),
    (
        "data-source-typo",
        sub("source: digits", "source: digit"),
        "data.source: expected one of digits, diabetes, synthetic, npz:PATH, csv:PATH, keras:NAME or package.module:function, got 'digit'; did you mean 'digits'?",
    ),
    ("bad-model-builder-spec", sub("builder: mlp", "builder: 'my models:build'"), "model.builder: expected mlp, cnn or package.module:function, got 'my models:build'"),
    ("metrics-not-a-list", sub("metrics: [accuracy]", "metrics: accuracy"), "model.metrics: expected a list or a mapping, got 'accuracy'"),
    ("bad-objective-mode", sub("mode: max", "mode: maximize"), "objective.mode: expected one of 'min', 'max', got 'maximize'"),
    ("cpus-zero", sub("cpus_per_trial: 1", "cpus_per_trial: 0"), "resources.cpus_per_trial: expected a value > 0, got 0"),
    ("callback-bad-item", sub("shuffle: true", "shuffle: true, callbacks: [3]"), "fit.callbacks.0: expected a string or a mapping, got 3"),
    ("callback-bad-args", sub("shuffle: true", "shuffle: true, callbacks: [{early_stopping: 3}]"), "fit.callbacks.0.early_stopping: expected a mapping, got 3"),
    # search space entries
    ("low-not-a-number", sub("low: 1.0e-4", "low: abc"), "search.space.learning_rate.low: expected a number, got 'abc'"),
    ("low-above-high", sub("low: 1.0e-4, high: 1.0e-1", "low: 1.0e-1, high: 1.0e-4"), "search.space.learning_rate: expected low <= high, got low=0.1 > high=0.0001"),
    ("log-with-low-zero", sub("low: 1.0e-4", "low: 0"), "search.space.learning_rate: expected low > 0 with log: true, got low=0.0"),
    ("log-and-step", sub("log: true}", "log: true, step: 0.01}"), "search.space.learning_rate: expected either log: true or step, not both"),
    ("step-zero", add_param("units: {type: int, low: 8, high: 64, step: 0}"), "search.space.units.step: expected a value > 0, got 0"),
    # values the sweep's own words cannot take (they trained nothing, or failed trial by trial)
    ("batch-size-zero", add_param("steps_per_execution: {type: categorical, choices: [0, 4]}"), "search.space.steps_per_execution.choices.0: expected a positive integer (steps per call), got 0"),
    ("learning-rate-negative", sub("learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}", "learning_rate: {type: float, low: -1, high: 0.1}"),
     "search.space.learning_rate.low: expected a learning rate > 0, got -1.0"),
    ("dropout-above-one", add_param("dropout: {type: float, low: 0.0, high: 1.5}"), "search.space.dropout.high: expected a dropout rate >= 0 and < 1, got 1.5"),
    ("momentum-above-one", sub("low: 0.0, high: 0.99, when", "low: 0.0, high: 1.5, when"), "search.space.momentum.high: expected a momentum >= 0 and <= 1, got 1.5"),
    ("epochs-float", add_param("epochs: {type: float, low: 1, high: 9}"), "search.space.epochs.type: expected int or categorical for an epoch count, got float"),
    ("step-wider-than-range", add_param("dropout: {type: float, low: 0.0, high: 0.5, step: 1.0}"),
     "search.space.dropout.step: expected a step at most high - low (0.5), got 1.0: the range would hold only low"),
    ("int-low-fraction", add_param("units: {type: int, low: 8.5, high: 64}"), "search.space.units.low: expected an integer, got 8.5"),
    ("unknown-param-type", sub("type: float, low: 1.0e-4", "type: uniform, low: 1.0e-4"), "search.space.learning_rate.type: expected one of 'float', 'int', 'categorical', got 'uniform'"),
    ("misspelt-param-type", sub("type: float, low: 1.0e-4", "type: flaot, low: 1.0e-4"), "search.space.learning_rate.type: expected one of 'float', 'int', 'categorical', got 'flaot'; did you mean 'float'?"),
    ("missing-param-type", sub("{type: float, low: 1.0e-4", "{low: 1.0e-4"), "search.space.learning_rate.type: required key is missing (expected one of 'float', 'int', 'categorical')"),
    ("param-not-a-mapping", sub(LR, "learning_rate: 0.01"), "search.space.learning_rate: expected a mapping, got 0.01"),
    ("empty-choices", sub("choices: [16, 32, 64, 128]", "choices: []"), "search.space.batch_size.choices: expected at least 1 item, got []"),
    ("choice-not-a-scalar", sub("choices: [16, 32, 64, 128]", "choices: [16, {big: 64}]"), "search.space.batch_size.choices.1: expected a string, a number or a boolean, got {big: 64}"),
    ("param-named-like-a-type", add_param("int: {type: int, low: one, high: 3}"), "search.space.int.low: expected an integer, got 'one'"),
    ("unknown-sampler", sub("sampler: tpe", "sampler: bayes"), "search.sampler: expected one of 'tpe', 'random', 'cmaes', 'grid', got 'bayes'"),
    ("grid-with-float", sub("sampler: tpe", "sampler: grid"), "search.space.learning_rate.type: expected categorical or int with sampler: grid, got float"),
    # conditions
    ("when-unknown-parameter", sub("when: {optimizer: sgd}", "when: {optimiser: sgd}"), "search.space.momentum.when.optimiser: expected one of the space's other parameters (learning_rate, batch_size, optimizer), got 'optimiser'; did you mean 'optimizer'?"),
    ("when-value-not-a-choice", sub("when: {optimizer: sgd}", "when: {optimizer: adamw}"), "search.space.momentum.when.optimizer: expected one of 'adam', 'sgd', 'rmsprop', got 'adamw'"),
    ("when-list-value-not-a-choice", sub("when: {optimizer: sgd}", "when: {optimizer: [sgd, lion]}"), "search.space.momentum.when.optimizer: expected one of 'adam', 'sgd', 'rmsprop', got 'lion'"),
    ("when-itself", sub("when: {optimizer: sgd}", "when: {momentum: 0.5}"), "search.space.momentum.when.momentum: expected another parameter, got the parameter itself"),
    ("when-not-a-mapping", sub("when: {optimizer: sgd}", "when: sgd"), "search.space.momentum.when: expected a mapping, got 'sgd'"),
    ("when-float-parent", sub("when: {optimizer: sgd}", "when: {learning_rate: 0.01}"), "search.space.momentum.when.learning_rate: expected a categorical or int parameter, got float parameter 'learning_rate'"),
    ("when-bool-is-not-int", add_param("flag: {type: categorical, choices: [true, false], when: {batch_size: true}}"), "search.space.flag.when.batch_size: expected one of 16, 32, 64, 128, got true"),
    (
        "when-int-parent-out-of-range",
        add_param("units: {type: int, low: 8, high: 64, step: 8}\n    width: {type: int, low: 1, high: 2, when: {units: 12}}"),
        "search.space.width.when.units: expected an integer 8..64 (step 8), got 12",
    ),
    (
        "when-cycle",
        sub(LR, "learning_rate: {type: categorical, choices: [0.1, 0.01], when: {optimizer: adam}}").replace(
            "choices: [adam, sgd, rmsprop]}", "choices: [adam, sgd, rmsprop], when: {learning_rate: 0.1}}"
        ),
        "search.space.learning_rate.when: expected conditions without a cycle, got learning_rate -> optimizer -> learning_rate",
    ),
    # scheduler
    ("unknown-scheduler", sub("type: asha", "type: pbt"), "scheduler.type: expected one of 'asha', 'hyperband', 'median', 'fifo', got 'pbt'"),
    ("scheduler-without-type", sub("type: asha, grace_period: 1, reduction_factor: 3", "min_samples_required: 2"),
     "scheduler.type: required key is missing (expected one of 'asha', 'hyperband', 'median', 'fifo')"),  # ASHA's own keys alone imply asha (below)
    ("grace-period-over-epochs", sub("grace_period: 1", "grace_period: 30"), "scheduler.grace_period: expected at most fit.epochs (27), got 30"),
    ("max-t-over-epochs", sub("reduction_factor: 3}", "reduction_factor: 3, max_t: 40}"), "scheduler.max_t: expected at most fit.epochs (27), got 40"),
    ("negative-data-seed", sub("validation_split: 0.2}", "validation_split: 0.2, seed: -1}"), "data.seed: expected a value >= 0, got -1"),
    ("grace-period-over-max-t", sub("grace_period: 1, reduction_factor: 3}", "grace_period: 3, reduction_factor: 3, max_t: 2}"),
     "scheduler.grace_period: expected at most scheduler.max_t (2), got 3"),  # Ray asserted it after the parent run existed
    ("reduction-factor-one", sub("reduction_factor: 3", "reduction_factor: 1"), "scheduler.reduction_factor: expected a value > 1, got 1"),
    # keys that take two kinds of value: what each takes, a close literal, never pydantic's member labels
    ("task-typo", sub("validation_split: 0.2}", "validation_split: 0.2, task: classifcation}"),
     "data.task: expected one of 'classification', 'regression' or a mapping, got 'classifcation' (did you mean 'classification'?)"),
    ("class-weight-typo", sub("shuffle: true}", "shuffle: true, class_weight: balance}"),
     "fit.class_weight: expected a mapping or one of 'balanced', got 'balance' (did you mean 'balanced'?)"),
    ("steps-per-execution-typo", sub("shuffle: true}", "shuffle: true, steps_per_execution: autoo}"),
     "fit.steps_per_execution: expected a number or one of 'auto', got 'autoo' (did you mean 'auto'?)"),
    ("steps-per-execution-zero", sub("shuffle: true}", "shuffle: true, steps_per_execution: 0}"), "fit.steps_per_execution: expected a value >= 1, got 0"),
    # values the trials could only fail on, or that fail inside Ray
    ("class-weight-negative", sub("shuffle: true}", "shuffle: true, class_weight: {0: -1.0, 1: 2.0}}"), "fit.class_weight.0: expected a finite weight >= 0, got -1.0"),
    ("class-weight-nan", sub("shuffle: true}", "shuffle: true, class_weight: {0: .nan, 1: 1}}"), "fit.class_weight.0: expected a finite weight >= 0, got .nan"),
    ("class-weight-all-zero", sub("shuffle: true}", "shuffle: true, class_weight: {0: 0, 1: 0}}"),
     "fit.class_weight: expected at least one weight above 0, got all 0 (every trial's loss would be 0)"),
    ("cpus-below-rays-unit", sub("cpus_per_trial: 1", "cpus_per_trial: 0.00001"), "resources.cpus_per_trial: expected a multiple of 0.0001 (Ray's smallest unit of a resource), got 1e-05"),
    ("epochs-beyond-any-sweep", sub("epochs: 27", "epochs: 99999999999999999999"), "fit.epochs: expected a value <= 1000000, got 99999999999999999999"),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_sweep_file_gives_one_exact_line(tmp_path, text, expected):
    path = write(tmp_path, text) if isinstance(text, str) else tmp_path / "sweep.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    with pytest.raises(SweepConfigError) as info:
        load(path)
    assert str(info.value) == f"{path}: {expected}"
    assert "\n" not in str(info.value)


def test_synthetic_data_larger_than_memory_is_refused_before_it_is_made(tmp_path):
    with pytest.raises(SweepConfigError) as info:
        load(write(tmp_path, sub("source: digits,", "source: synthetic, samples: 1000000000000,")))
    assert info.value.key == "data.samples" and "fits in this machine's memory" in info.value.expected


def test_bad_table_is_big_and_distinct():
    assert len(BAD) >= 24
    assert len({case[0] for case in BAD}) == len(BAD)
    assert len({case[1] for case in BAD}) == len(BAD)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(SweepConfigError) as info:
        load(path)
    assert str(info.value) == f"{path}: expected a sweep YAML file, but no such file exists"


def test_a_folder_is_not_a_sweep_file(tmp_path):
    with pytest.raises(SweepConfigError) as info:
        load(tmp_path)
    assert str(info.value) == f"{tmp_path}: expected a sweep YAML file, got a folder"  # it exists: "no such file" misled


def test_bad_mapping_names_dict(tmp_path):
    with pytest.raises(SweepConfigError) as info:
        load({"name": "x", "data": {"source": "digits"}})
    assert str(info.value) == "<dict>: search: required key is missing"


def test_error_keys_never_show_pydantic_internals(tmp_path):
    internals = {"float", "int", "categorical", "asha", "hyperband", "median", "fifo", "str", "bool", "none", "__root__"}
    for case_id, text, _expected in BAD:
        path = write(tmp_path, text) if isinstance(text, str) else tmp_path / "sweep.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        with pytest.raises(SweepConfigError) as info:
            load(path)
        parts = info.value.key.split(".")
        if case_id == "param-named-like-a-type":
            assert parts == ["search", "space", "int", "low"]  # a user's name is kept
            continue
        assert not internals & set(parts), case_id
        assert not any(p.startswith(("function-", "dict[", "list[")) for p in parts), case_id


def test_a_regression_loss_decides_the_task_the_file_left_open(tmp_path):
    """Counts 0..5 with ``model.loss: mse`` were read as 6 classes and the model refused."""
    assert load(write(tmp_path, sub("loss: sparse_categorical_crossentropy", "loss: mse"))).data.task == "regression"
    assert load(write(tmp_path, sub("loss: sparse_categorical_crossentropy", "loss: Huber"))).data.task == "regression"
    heads = load(write(tmp_path, sub("loss: sparse_categorical_crossentropy", "loss: {kind: sparse_categorical_crossentropy, size: poisson}")))
    assert heads.data.task == {"size": "regression"}
    assert load(write(tmp_path, FULL)).data.task is None
    given = sub("validation_split: 0.2}", "validation_split: 0.2, task: classification}").replace("loss: sparse_categorical_crossentropy", "loss: mse")
    assert load(write(tmp_path, given)).data.task == "classification", "the file's own data.task wins"


def test_asha_settings_without_a_type_tune_the_default_scheduler(tmp_path):
    """``--set scheduler.grace_period=2`` on a file with no scheduler section said that
    scheduler.type was missing, though ASHA is the documented default."""
    from sweep.spec.config import AshaConfig

    path = write(tmp_path, sub("type: asha, grace_period: 1, reduction_factor: 3", "grace_period: 2"))
    config = load(path)
    assert isinstance(config.scheduler, AshaConfig) and config.scheduler.grace_period == 2
    bare = tmp_path / "bare.yaml"
    bare.write_text("name: bare\ndata: {source: digits}\nsearch: {space: {learning_rate: {type: float, low: 0.001, high: 0.1}}}\n")
    assert load(bare, {"scheduler.grace_period": 2}).scheduler.grace_period == 2
    with pytest.raises(SweepConfigError, match="search.trials: expected a value <= 1000000"):
        load(bare, {"search.trials": 10**25})


def test_list_outputs_are_named_by_position_and_their_losses_decide_their_task(tmp_path):
    """The sweep's advice said ``data.task: {1: classification}``; written so, it was refused
    ("expected a string, got 1"). A list of losses did not set the tasks a dict of losses sets;
    Keras' class name MeanSquaredError did not count as a regression loss."""
    by_position = load(write(tmp_path, sub("validation_split: 0.2}", "validation_split: 0.2, task: {1: regression}}")))
    assert by_position.data.task == {"1": "regression"}
    listed = load(write(tmp_path, sub("loss: sparse_categorical_crossentropy", "loss: [sparse_categorical_crossentropy, mse]")))
    assert listed.data.task == {"1": "regression"}
    assert load(write(tmp_path, sub("loss: sparse_categorical_crossentropy", "loss: MeanSquaredError"))).data.task == "regression"


@pytest.mark.parametrize(("text", "overrides", "expected"), [
    # a typo of a required section said as the typo, not as the section missing (with or without an override)
    (FULL.replace("search:", "serach:"), {}, "serach: unknown key (expected one of: name, data, model, fit, objective, search, scheduler, resources, tracking, failure; did you mean 'search'?)"),
    (FULL.replace("search:", "serach:"), {"trials": 2}, "serach: unknown key (expected one of: name, data, model, fit, objective, search, scheduler, resources, tracking, failure; did you mean 'search'?)"),
    # a section the file gives as no mapping is the file's error, not "<overrides>"
    ("name: x\nfit: [epochs, 2]\n", {"epochs": 2}, "fit: expected a mapping, got [epochs, 2]"),
    # an override beside a bad key of the file is not blamed for it
    (FULL.replace("batch_size: {type: categorical", "batch_size: {type: categoricl"), {"trials": 2}, "search.space.batch_size.type: expected one of"),
])
def test_the_file_is_blamed_for_its_own_errors_with_overrides_given(tmp_path, text, overrides, expected):
    """Found by a helper: `serach:` read "search: required key is missing"; `fit: [epochs, 2]`
    with --epochs 2 read "<overrides>: fit.epochs: expected fit to be a mapping"; a type typo in
    the space with --trials 2 read "(with override trials=2)"."""
    path = write(tmp_path, text)
    with pytest.raises(SweepConfigError) as info:
        load(path, overrides)
    assert str(info.value).startswith(f"{path}: {expected}"), str(info.value)


@pytest.mark.parametrize(("data", "expected"), [
    ({"source": "synthetic", "args": {"n": 5}}, "data.args: expected no args with data.source: synthetic (args are the keyword arguments of a package.module:function source)"),
    ({"source": "digits", "target": "y"}, "data.target: expected no target with data.source: digits (target names the label column of a csv: source)"),
])
def test_data_keys_its_source_never_reads_are_refused(tmp_path, data, expected):
    """Found by a helper: they were accepted and did nothing."""
    path = write(tmp_path, f"name: x\ndata: {json.dumps(data)}\nsearch: {{space: {{learning_rate: {{type: float, low: 0.001, high: 0.1}}}}}}\n")
    with pytest.raises(SweepConfigError) as info:
        load(path)
    assert str(info.value) == f"{path}: {expected}"
