"""Trial numbers (the 0002 users see) from Tune's creation order: the same in the ledger and in
the checkpoint folder Tune names before the ledger sees the trial, fresh and resumed."""

from __future__ import annotations

from types import SimpleNamespace

from sweep.driver.ledger import Ledger, TrialNumbering, creation_count


def _trial(count: int | None, trial_id: str, **config):
    tag = f"{count}_learning_rate=0.01" if count is not None else ""
    return SimpleNamespace(experiment_tag=tag, trial_id=trial_id, config=config)


def test_creation_count_reads_tunes_experiment_tag():
    assert creation_count(_trial(3, "a")) == 3
    assert creation_count(_trial(None, "a")) is None
    assert creation_count(SimpleNamespace()) is None


def test_a_fresh_sweep_numbers_trials_in_creation_order_and_names_folders_alike():
    numbering = TrialNumbering()
    assert [numbering.number(_trial(n, f"t{n}")) for n in (1, 2, 3)] == [0, 1, 2]
    assert numbering.dirname(_trial(3, "abc12345")) == "0002_abc12345"
    assert numbering.dirname(_trial(None, "abc12345")) == "trial_abc12345"


def test_a_resumed_sweep_keeps_interrupted_numbers_and_counts_new_trials_on():
    # earlier session: trials 0..4; 1 and 3 were interrupted and are created again first
    numbering = TrialNumbering(prior=5, resumed={"old1": 1, "old3": 3})
    assert numbering.number(_trial(1, "n1", _resume_trial_id="old1")) == 1
    assert numbering.number(_trial(2, "n2", _resume_trial_id="old3")) == 3
    assert [numbering.number(_trial(n, f"n{n}")) for n in (3, 4)] == [5, 6]


def test_the_ledger_numbers_trials_as_their_folders_are_named():
    ledger = Ledger("val_loss", "min", lambda config: dict(config), max_epochs=3)
    late, early = _trial(2, "second"), _trial(1, "first")
    assert ledger.outcome(late).number == 1  # seen first, still numbered by creation order
    assert ledger.outcome(early).number == 0
    assert ledger.numbering.dirname(late).startswith("0001_")


def test_the_ledger_falls_back_to_the_order_it_sees_trials_in():
    ledger = Ledger("val_loss", "min", lambda config: dict(config), max_epochs=3)
    assert [ledger.outcome(_trial(None, f"t{i}")).number for i in range(3)] == [0, 1, 2]


def test_a_resumed_trial_does_not_carry_its_interruption_as_an_error_reason():
    from sweep.driver.recovery import PriorTrial

    ledger = Ledger("val_loss", "min", lambda config: dict(config), max_epochs=3)
    fields = {"params": {}, "epochs": 1, "value": 0.5, "last_value": 0.5, "best_epoch": 1, "checkpoint": None, "run_id": "r", "last_step": 1}
    ledger.seed([
        PriorTrial(trial_id="a", number=0, status="interrupted", reason="interrupted by SIGINT", **fields),
        PriorTrial(trial_id="b", number=1, status="failed", reason="ValueError: bad", **fields),
    ])
    assert ledger.outcomes["a"].reason is None
    assert ledger.outcomes["b"].reason == "ValueError: bad"
    assert ledger.numbering == TrialNumbering(prior=2, resumed={"a": 0})


def test_a_trial_whose_checkpoint_was_deleted_before_the_resume_is_not_the_best(tmp_path):
    """Its checkpoint gone, the resumed trial fails (saying so): the best is the best trial whose
    checkpoint is there; it was the failed one, and logging its model failed the sweep's end."""
    from sweep.driver.recovery import PriorTrial

    kept = tmp_path / "b" / "checkpoint_000001"
    kept.mkdir(parents=True)
    (tmp_path / "error.txt").write_text("FileNotFoundError: cannot resume this trial: its checkpoint is gone\n")
    ledger = Ledger("val_loss", "min", lambda config: dict(config), max_epochs=3)
    fields = {"params": {}, "epochs": 1, "last_value": 0.5, "best_epoch": 1, "last_step": 1}
    ledger.seed([
        PriorTrial(trial_id="a", number=0, status="interrupted", reason=None, value=0.2, checkpoint=str(tmp_path / "a" / "gone"), run_id="ra", **fields),
        PriorTrial(trial_id="b", number=1, status="completed", reason=None, value=0.3, checkpoint=str(kept), run_id="rb", **fields),
    ])
    assert ledger.best.trial_id == "a"
    failed = SimpleNamespace(trial_id="new", config={"_resume_trial_id": "a"}, experiment_tag="", error_file=str(tmp_path / "error.txt"))
    ledger.on_trial_error(0, [], failed)
    assert ledger.outcomes["a"].status == "failed" and ledger.outcomes["a"].checkpoint is None
    assert ledger.best_trial().trial_id == "b" and ledger.best_trial().checkpoint == str(kept)


def test_fail_fast_sees_one_failure_in_errors_that_quote_each_trials_hyperparameters():
    """A factory raising ``ValueError(f"lr={lr} unsupported")`` fails every trial the same way;
    the numbers differing per trial kept fail-fast from ever tripping."""
    from sweep.driver.ledger import FailFast

    ledger = Ledger("val_loss", "min", lambda config: dict(config), max_epochs=3)
    fail_fast = FailFast(ledger, limit=3)
    for index, lr in enumerate((0.05, 0.0031, 1e-4)):
        outcome = ledger.outcome(_trial(index, f"t{index}"))
        outcome.status, outcome.reason = "failed", f"ValueError: lr={lr} unsupported by this model"
        assert (fail_fast.tripped() is None) == (index < 2)
    assert fail_fast.tripped() == "ValueError: lr=0.05 unsupported by this model"

    other = Ledger("val_loss", "min", lambda config: dict(config), max_epochs=3)
    for index, reason in enumerate(("ValueError: a", "KeyError: b", "ValueError: a")):
        outcome = other.outcome(_trial(index, f"u{index}"))
        outcome.status, outcome.reason = "failed", reason
    assert FailFast(other, limit=3).tripped() is None, "different errors never trip it"


def test_a_retried_trial_that_completes_has_no_error_reason(tmp_path):
    """"trial 0001 completed (same error as trial 0000)": the retry's error stayed its reason,
    on the live line and as sweep.reason on a FINISHED run (sweep.retry_reason keeps it)."""
    from sweep.protocol import END_FIELD, EPOCH_FIELD, KEYS_FIELD

    ledger = Ledger("val_loss", "min", lambda config: dict(config), max_epochs=3)
    (tmp_path / "error.txt").write_text("RayActorError: The actor is dead because its worker process has died.\n")
    trial = SimpleNamespace(trial_id="t", config={}, experiment_tag="", error_file=str(tmp_path / "error.txt"), last_result={})
    ledger.on_trial_recover(0, [], trial)
    assert ledger.outcomes["t"].retries == 1 and "actor is dead" in ledger.outcomes["t"].reason
    trial.last_result = {EPOCH_FIELD: 3, KEYS_FIELD: "val_loss", "val_loss": 0.4, END_FIELD: "completed"}
    ledger.on_trial_complete(0, [], trial)
    assert ledger.outcomes["t"].status == "completed" and ledger.outcomes["t"].reason is None
