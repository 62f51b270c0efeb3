"""The one walk over a runtime_env's folders (scheduler/runtime_env.py)."""

from __future__ import annotations

import pytest

from scheduler import runtime_env
from scheduler.errors import InvalidSpec


def test_entries_name_each_folder_as_an_error_would() -> None:
    env = {"working_dir": "/w", "py_modules": ["/a", "s3://b/c.zip"], "env_vars": {"X": "1"}}
    assert runtime_env.entries(env) == [("runtime_env.working_dir", "/w"), ("runtime_env.py_modules.0", "/a"),
                                        ("runtime_env.py_modules.1", "s3://b/c.zip")]
    assert runtime_env.entries({}) == []
    with pytest.raises(InvalidSpec) as err:
        runtime_env.entries({"py_modules": "/not/a/list"})
    assert err.value.fields["field"] == "runtime_env.py_modules"


def test_local_folders_are_told_from_uris() -> None:
    assert runtime_env.has_local({"py_modules": ["s3://b/c.zip", "/here"]})
    assert not runtime_env.has_local({"working_dir": "gcs://_ray_pkg_x.zip", "py_modules": ["local:///nfs/x"]})
    assert not runtime_env.is_local("") and not runtime_env.is_local(None)


def test_map_spec_changes_every_folder_and_leaves_the_callers_dict_alone() -> None:
    spec = {"entrypoint": "m:f", "runtime_env": {"working_dir": "w", "py_modules": ["a", "b"]}}
    out = runtime_env.map_spec(spec, str.upper)
    assert out["runtime_env"] == {"working_dir": "W", "py_modules": ["A", "B"]}
    assert spec["runtime_env"] == {"working_dir": "w", "py_modules": ["a", "b"]}
    assert runtime_env.map_spec({"entrypoint": "m:f"}, str.upper) == {"entrypoint": "m:f"}
