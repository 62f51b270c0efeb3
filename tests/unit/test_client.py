"""The Python client's own logic (its calls are covered end to end in test_ray_e2e.py)."""

from __future__ import annotations

import os

from scheduler.client import absolute_local_dirs


def test_relative_local_dirs_become_absolute_and_uris_stay(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = {"entrypoint": "m:f", "runtime_env": {"working_dir": "code", "py_modules": ["lib", "s3://b/x.zip"],
                                                 "env_vars": {"A": "1"}}}
    fixed = absolute_local_dirs(spec)
    assert fixed["runtime_env"]["working_dir"] == os.path.join(str(tmp_path), "code")
    assert fixed["runtime_env"]["py_modules"] == [os.path.join(str(tmp_path), "lib"), "s3://b/x.zip"]
    assert fixed["runtime_env"]["env_vars"] == {"A": "1"}
    assert spec["runtime_env"]["working_dir"] == "code"  # the caller's dict is not changed
    assert absolute_local_dirs({"entrypoint": "m:f"}) == {"entrypoint": "m:f"}
