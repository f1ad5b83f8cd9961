"""The warm session's trial workers keep the environment ``sweep up`` started them with: a
command whose environment differs where a worker could read it runs in its own process instead
(a factory reading ``os.environ["MY_WIDTH"]`` built another model on the workers than in the
preflight); variables of the shell or of the driver alone do not count."""

from __future__ import annotations

from sweep.driver import daemon


def test_only_variables_a_trial_could_read_send_a_command_to_its_own_process(monkeypatch):
    base = {"PATH": "/usr/bin", "HOME": "/root", "PWD": "/a", "MY_WIDTH": "4", "SHLVL": "1"}
    monkeypatch.setattr(daemon, "_BASE_ENV", dict(base))
    assert daemon.differing_variables(dict(base)) == []
    shell_only = {**base, "PWD": "/b", "OLDPWD": "/a", "SHLVL": "2", "TERM_SESSION_ID": "x", "TMUX_PANE": "%1", "COLUMNS": "120"}
    assert daemon.differing_variables(shell_only) == []
    driver_only = {**base, "MLFLOW_TRACKING_URI": "sqlite:///other.db", "SWEEP_TRACE_DIR": "/t", "TUNE_RESULT_BUFFER_LENGTH": "1"}
    assert daemon.differing_variables(driver_only) == []
    assert daemon.differing_variables({**base, "MY_WIDTH": "9", "CUDA_VISIBLE_DEVICES": "0"}) == ["CUDA_VISIBLE_DEVICES", "MY_WIDTH"]
