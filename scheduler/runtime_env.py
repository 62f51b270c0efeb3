"""The folders a job's ``runtime_env`` names (its ``working_dir`` and ``py_modules``), walked in
one place: what the submit checks, the clients upload and the launcher uploads all read them here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidSpec


def entries(runtime_env: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(field, value)`` of the working_dir and every py_modules entry, the field named as in an
    error (``runtime_env.py_modules.1``); a py_modules that is not a list is an ``InvalidSpec``."""
    found: list[tuple[str, Any]] = []
    if runtime_env.get("working_dir") is not None:
        found.append(("runtime_env.working_dir", runtime_env["working_dir"]))
    modules = runtime_env.get("py_modules") or []
    if not isinstance(modules, list):
        raise InvalidSpec("runtime_env.py_modules must be a list", field="runtime_env.py_modules")
    found += [(f"runtime_env.py_modules.{i}", p) for i, p in enumerate(modules)]
    return found


def is_local(value: Any) -> bool:
    """A folder path on this machine, not a URI."""
    return isinstance(value, str) and bool(value) and "://" not in value


def has_local(runtime_env: Mapping[str, Any]) -> bool:
    """Whether the runtime_env names a folder on this machine (to upload before a launch)."""
    return any(is_local(value) for _, value in entries(runtime_env))


def map_spec(spec: dict[str, Any], change: Callable[[Any], Any]) -> dict[str, Any]:
    """The spec with ``change`` applied to its working_dir and each py_modules entry (a new dict;
    the caller's is not changed). A spec without a runtime_env dict, or with a py_modules that is
    not a list, is left for the server's validation to refuse."""
    env = spec.get("runtime_env")
    if not isinstance(env, dict):
        return spec
    env = dict(env)
    if "working_dir" in env:
        env["working_dir"] = change(env["working_dir"])
    if isinstance(env.get("py_modules"), list):
        env["py_modules"] = [change(p) for p in env["py_modules"]]
    return {**spec, "runtime_env": env}
