"""docs/settings.md is generated from the code (``scheduler.settings_doc``) and must not drift."""

from __future__ import annotations

from pathlib import Path

from scheduler import config, settings_doc

REGENERATE = "run python -m scheduler.settings_doc --write"


def test_the_file_is_what_the_code_renders() -> None:
    assert settings_doc.DOC_PATH.read_text() == settings_doc.render(), REGENERATE


def test_every_variable_read_is_documented_and_every_documented_one_is_read() -> None:
    read = set(settings_doc.variables_read())
    documented = settings_doc.documented()
    assert read - documented == set(), f"read, not documented: add to settings_doc.OTHERS, then {REGENERATE}"
    assert documented - read == set(), f"documented but no longer read: remove them, then {REGENERATE}"


def test_every_settings_field_read_from_the_environment_has_a_row() -> None:
    rows = {r.field: r for r in settings_doc.setting_rows()}
    sources = settings_doc._field_sources()
    assert {name for name, src in sources.items() if src.variable} == set(rows)
    assert rows["min_runtime_s"].variable == "TRAINQ_MIN_RUNTIME_S"
    assert rows["min_runtime_s"].default == "`600`"
    assert rows["backfill"].default == "`1` (on)"
    assert rows["allowed_dirs"].default == "unset"
    assert rows["storage_root"].default == "`~/.trainq/storage`"  # the same on every machine


def test_defaults_ignore_the_environment_the_doc_is_rendered_in(monkeypatch) -> None:
    monkeypatch.setenv("TRAINQ_MIN_RUNTIME_S", "5")
    monkeypatch.setenv("TRAINQ_HOME", "/elsewhere")
    assert settings_doc.render() == settings_doc.DOC_PATH.read_text(), REGENERATE
    assert config.Settings().min_runtime_s == 5  # the environment itself was left as it was


def test_a_new_read_is_found(tmp_path: Path) -> None:
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "api").mkdir()
    (tmp_path / "scheduler" / "x.py").write_text(
        'import os\n"""Mentions TRAINQ_IN_A_DOCSTRING only."""\nos.environ.get("TRAINQ_NEW_ONE", "7")\n')
    (tmp_path / "api" / "broken.py").write_text('x = os.environ["TRAINQ_IN_BROKEN"]\ndef (:\n')
    assert settings_doc.variables_read(tmp_path) == {"TRAINQ_IN_BROKEN": ["api/broken.py"],
                                                     "TRAINQ_NEW_ONE": ["scheduler/x.py"]}
    assert settings_doc.literal_defaults(tmp_path) == {"TRAINQ_NEW_ONE": {"7"}}
