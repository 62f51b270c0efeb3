"""What a job may reach on trainq's machines: pure checks, no Ray, no I/O beyond resolving paths.

A job's spec comes from a token holder who should reach only trainq's API, not the head node's
files or trainq's own settings. These functions decide, the core applies them at submit:

- local folders (``runtime_env.working_dir``/``py_modules``) only under the folders an admin
  allows (``allowed_dirs``: with a users file, none unless listed), or under trainq's own package
  store (what clients uploaded);
- ``storage_path`` only under the storage roots an admin lists, never inside a job's folder;
- ``runtime_env.env_vars`` never set trainq's or Ray's own variables;
- secrets (``TRAINQ_SECRET_ENV``) go to the workers from the scheduler's environment, never
  through the spec.

Paths are compared after ``os.path.realpath``: a symlink or ``..`` that leads out of an allowed
folder is judged by where it really leads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidSpec, NotAllowedHere
from .runtime_env import entries as runtime_env_entries

#: URI schemes Ray can fetch a package from that do not read the head node's own files.
REMOTE_SCHEMES = frozenset({"s3", "gs", "gcs", "https"})
#: URI schemes that name a path on the machine that reads them: checked like plain paths.
LOCAL_SCHEMES = frozenset({"file", "local"})
#: env_vars prefixes a job may not set: trainq's settings and Ray's own switches.
RESERVED_ENV_PREFIXES = ("TRAINQ_", "RAY_")
#: a job's folder under a storage root is ``<root>/<job_id>``; see ``jobs.new_job_id``
JOB_FOLDER_RE = re.compile(r"^job_[0-9a-f]+$")
#: a path with a job's folder in it, as a JSON Schema pattern (the spec's schema refuses it)
JOB_FOLDER_IN_PATH = r"(^|/)job_[0-9a-f]+(/|$)"


def _anycase(word: str) -> str:
    # JSON Schema patterns have no case-insensitive flag; scheme_of() lowercases, so spell both.
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


#: what ``check_package_paths`` takes, as a JSON Schema pattern: an absolute path, a remote URI,
#: or file:// / local:// with an absolute path; never a NUL byte (no path can hold one)
PACKAGE_PATTERN = (r"^(/|(" + "|".join(_anycase(s) for s in sorted(REMOTE_SCHEMES)) + r")://|("
                   + "|".join(_anycase(s) for s in sorted(LOCAL_SCHEMES)) + r")://(/|$))[^\x00]*$")


def parse_list(raw: str | None) -> list[str] | None:
    """A list setting, split on ``os.pathsep`` or commas; None when unset, [] when empty."""
    if raw is None:
        return None
    # os.pathsep (":" here) also ends a URI's scheme: "s3://bucket" is one entry, not "s3" and "//bucket".
    return [part.strip() for part in re.split(rf",|{re.escape(os.pathsep)}(?!//)", raw) if part.strip()]


def allowed_dirs(setting: str | None, with_users: bool) -> list[str] | None:
    """The head-node folders a job may name as its working_dir/py_modules (``TRAINQ_ALLOWED_DIRS``);
    None means any folder.

    Unset, it depends on who can submit. One user (no users file, a laptop): any folder, since the
    jobs run as that user anyway. With a users file: none, since a token holder must not run code
    from the scheduler's machine that its admin did not name; each user uploads their own folder
    (the CLI and the HTTP client do). Empty: none, either way.
    """
    listed = parse_list(setting)
    return [] if listed is None and with_users else listed


def real(path: str) -> str:
    """The path with ``~``, symlinks and ``..`` resolved."""
    return os.path.realpath(os.path.expanduser(path))


def is_under(path: str, roots: Iterable[str]) -> bool:
    """True when ``path`` (resolved) is one of ``roots`` (resolved) or inside one of them."""
    target = real(path)
    for root in roots:
        base = real(root)
        if target == base or target.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False


def scheme_of(value: str) -> str | None:
    """``s3`` for ``s3://bucket/x``; None for a plain path."""
    head, sep, _ = value.partition("://")
    return head.lower() if sep else None


def local_path_of(value: str) -> str | None:
    """The local path a runtime_env entry names (plain, ``file://`` or ``local://``), else None."""
    scheme = scheme_of(value)
    if scheme is None:
        return value
    if scheme in LOCAL_SCHEMES:
        return value.split("://", 1)[1] or "/"
    return None


def check_package_paths(runtime_env: Mapping[str, Any], allowed_dirs: list[str] | None,
                        trainq_dirs: Iterable[str] = ()) -> None:
    """Refuse a ``working_dir``/``py_modules`` entry that reads a head-node folder not allowed.

    ``allowed_dirs`` None allows any local folder (single-user mode); ``trainq_dirs`` (the
    package store trainq writes uploads into) are always allowed. Remote URIs in
    ``REMOTE_SCHEMES`` are allowed; other schemes are refused. Raises ``InvalidSpec`` naming the field.
    """
    check_local_paths(runtime_env_entries(runtime_env), allowed_dirs, trainq_dirs)


def check_local_paths(entries: Iterable[tuple[str, Any]], allowed_dirs: list[str] | None,
                      trainq_dirs: Iterable[str] = ()) -> None:
    """``check_package_paths`` for any ``(field, path or URI)`` pairs (e.g. a workload's data files)."""
    trainq_dirs = list(trainq_dirs)
    for field, value in entries:
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidSpec(f"{field} must be a string (a folder or a URI) without NUL bytes", field=field)
        scheme = scheme_of(value)
        if scheme is not None and scheme not in LOCAL_SCHEMES:
            if scheme in REMOTE_SCHEMES:
                continue
            raise InvalidSpec(f"{field} {value!r}: unsupported URI scheme {scheme!r}; use one of "
                              f"{sorted(REMOTE_SCHEMES)}, or upload a local folder with the CLI or the "
                              "Python HTTP client", field=field)
        path = local_path_of(value) or ""
        if not os.path.isabs(path):
            raise InvalidSpec(f"{field} {value!r} must be an absolute path on the scheduler's machine",
                              field=field)
        if allowed_dirs is None or is_under(path, [*allowed_dirs, *trainq_dirs]):
            continue
        where = (f"the allowed folders ({', '.join(allowed_dirs)})" if allowed_dirs
                 else "any folder (no local folders are allowed here)")
        raise NotAllowedHere(f"{field} {value!r} is a folder on the scheduler's machine outside {where}; "
                          "submit with `trainq submit --working-dir` or scheduler.http.Client, which "
                          "upload your own folder, or use a URI such as s3://...", field=field)


def reserved_env_vars(names: Iterable[str]) -> list[str]:
    """The names a job may not set in ``runtime_env.env_vars`` (trainq's and Ray's own)."""
    return sorted(n for n in names if n.upper().startswith(RESERVED_ENV_PREFIXES))


#: In ``TRAINQ_STORAGE_ROOTS``: any storage path is allowed (still never inside a job's folder).
ANY = "*"


def check_storage_path(storage_path: str | None, roots: list[str]) -> None:
    """Refuse a ``storage_path`` outside the admin's storage roots or inside a job's folder.

    A job's runs go to ``<storage_path>/<job_id>``; inside another job's folder (``<root>/job_...``)
    it could overwrite that job's checkpoints or resume from them. URIs (``s3://...``) are compared
    as prefixes. Raises ``InvalidSpec`` with ``field="storage_path"``.
    """
    if storage_path is None:
        return
    root = _root_of(storage_path, roots)
    if root is None:
        raise NotAllowedHere(f"storage_path {storage_path!r} is outside the storage roots an admin allows "
                          f"({', '.join(roots) or 'none'}; setting TRAINQ_STORAGE_ROOTS)", field="storage_path")
    if scheme_of(storage_path) is None:
        rest = os.path.relpath(real(storage_path), real(root))
    else:
        rest = storage_path.rstrip("/")[len(root.rstrip("/")):].lstrip("/")
    parts = [p for p in rest.split("/") if p and p != "."]
    if any(JOB_FOLDER_RE.match(p) for p in parts):
        raise InvalidSpec(f"storage_path {storage_path!r} is inside a job's folder; each job's runs live in "
                          "their own folder under a storage root", field="storage_path")


def _root_of(path: str, roots: list[str]) -> str | None:
    if ANY in roots:  # the admin allows any storage (one trusted user): the path's own top
        scheme = scheme_of(path)
        return os.sep if scheme is None else f"{scheme}://"
    for root in roots:
        local = scheme_of(root) is None and scheme_of(path) is None
        if local and is_under(path, [root]):
            return root
        # A URI is compared as text, so "s3://b/root/../other" must not pass as inside "s3://b/root".
        inside_uri = path.rstrip("/") == root.rstrip("/") or path.startswith(root.rstrip("/") + "/")
        if not local and scheme_of(root) is not None and inside_uri and "/../" not in path + "/" \
                and "/./" not in path + "/":
            return root
    return None


def secret_values(names: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The secrets to hand the workers: each named variable that is set (and not empty) in ``environ``."""
    return {name: environ[name] for name in names if environ.get(name)}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (values shorter than 4 are left alone:
    they would blank out ordinary words)."""
    for value in sorted(secrets, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text
