"""User modules resolve next to the sweep file, even when a same-named module was loaded before."""

from __future__ import annotations

from pathlib import Path

from sweep.inputs.imports import resolve


def _module(folder: Path, value: str) -> Path:
    folder.mkdir()
    (folder / "sweep_user_mod.py").write_text(f"def build(hp, info):\n    return {value!r}\n")
    return folder


def test_a_second_sweep_gets_its_own_same_named_module(tmp_path):
    first = _module(tmp_path / "first", "first")
    second = _module(tmp_path / "second", "second")
    assert resolve("sweep_user_mod:build", "model.builder", (first,))(None, None) == "first"
    assert resolve("sweep_user_mod:build", "model.builder", (second,))(None, None) == "second"
    assert resolve("sweep_user_mod:build", "model.builder", (second,))(None, None) == "second"


def test_a_module_edited_between_two_sweeps_in_one_process_is_imported_again(tmp_path):
    """A notebook runs a sweep, the user edits a helper the data function imports, runs again:
    the second sweep gets the edited code (and an untouched module is not imported again)."""
    import os

    from sweep.inputs.imports import forget_edited_modules

    (tmp_path / "edit_helper.py").write_text("N = 3\n")
    (tmp_path / "edit_data.py").write_text("import edit_helper\n\ndef make():\n    return edit_helper.N\n")
    first = resolve("edit_data:make", "data.source", (tmp_path,))
    assert first() == 3
    assert forget_edited_modules() == [], "nothing changed: nothing is imported again"
    assert resolve("edit_data:make", "data.source", (tmp_path,)) is first

    helper = tmp_path / "edit_helper.py"
    helper.write_text("N = 22\n")
    stat = helper.stat()
    os.utime(helper, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later mtime, even on a coarse clock
    assert forget_edited_modules() == ["edit_helper"]
    assert resolve("edit_data:make", "data.source", (tmp_path,))() == 22, "the data function sees the edited helper"


def test_loading_a_second_sweeps_model_finds_its_own_same_named_module(tmp_path):
    """load_best of two sweeps in one notebook, each folder with its own mymodels.Scale: the
    second model was built from the first folder's class (max |difference| 0.22, no word)."""
    from sweep.inputs.imports import import_local

    first = _module(tmp_path / "a", "first")
    second = _module(tmp_path / "b", "second")
    assert import_local("sweep_user_mod", (first,)).build(None, None) == "first"
    assert import_local("sweep_user_mod", (second,)).build(None, None) == "second"
    assert import_local("sweep_user_mod", (tmp_path / "nowhere",)).build(None, None) == "second", "no other here: the one loaded"
