"""Uploaded packages: a client's own folder, zipped, stored by trainq for a job's runtime_env.

Users never name a folder on the head node: ``trainq submit`` and ``scheduler.http.HttpClient``
zip the caller's ``working_dir``/``py_modules`` folder (``pack``), POST it to
``/api/training/packages``, and put the path trainq answers into the spec. The scheduler keeps
it under ``<storage root>/packages/<digest>/<name>`` (``store``), a folder trainq owns, so a job
may always use it. Content-addressed: the same folder uploads to the same place.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import runtime_env
from .errors import InvalidSpec, TooLarge

#: A package's name is its folder's name: for py_modules it is the module people import.
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
#: Never packed: caches and version control, which can be large and are never imported.
SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache"})
#: The unzipped size may be at most this many times the zip's limit (a zip bomb stops here).
UNZIPPED_FACTOR = 4
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same folder always zips to the same bytes


def pack(folder: str, max_bytes: int | None = None) -> bytes:
    """The folder's files as a zip with stable bytes (sorted, fixed timestamps), paths relative
    to the folder. Raises ``TooLarge`` past ``max_bytes``."""
    root = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = Path(dirpath) / name
                if not path.is_file():
                    continue  # a dangling link, a socket: nothing to ship
                info = zipfile.ZipInfo(path.relative_to(root).as_posix(), _EPOCH)
                info.external_attr = (stat.S_IFREG | (path.stat().st_mode & 0o755)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
                if max_bytes is not None and buf.tell() > max_bytes:
                    raise TooLarge(f"folder {folder} is larger than the {max_bytes // 2**20} MiB a package"
                                   " may be (zipped); ship large data through shared storage instead",
                                   limit_bytes=max_bytes)
    data = buf.getvalue()
    if max_bytes is not None and len(data) > max_bytes:
        raise TooLarge(f"folder {folder} zips to {len(data)} bytes, more than the {max_bytes} bytes a"
                       " package may be", limit_bytes=max_bytes)
    return data


def digest(name: str, data: bytes) -> str:
    """The package's content address: its name and its zip's bytes."""
    return hashlib.sha256(name.encode() + b"\0" + data).hexdigest()[:32]


def store(data: bytes, name: str, root: str, max_bytes: int) -> dict[str, Any]:
    """Unpack an uploaded zip into ``<root>/<digest>/<name>`` (once) and say where it is.

    Refuses a bad name, a zip too large (zipped or unzipped), and any entry that is absolute,
    climbs out with ``..`` or is a symlink: nothing is written outside the package's folder.
    """
    if not NAME_RE.match(name):
        raise InvalidSpec(f"package name {name!r} must be a folder name of letters, digits, '_', '.' or '-'",
                          field="name")
    if len(data) > max_bytes:
        raise TooLarge(f"the package is {len(data)} bytes, more than the {max_bytes} bytes allowed "
                       "(setting TRAINQ_MAX_PACKAGE_MB)", limit_bytes=max_bytes)
    address = digest(name, data)
    final = Path(root) / address
    if (final / name).is_dir():
        return _described(final / name, address, data)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InvalidSpec("the package is not a zip file", field="body") from None
    tmp = Path(root) / f".tmp-{uuid.uuid4().hex}"
    try:
        _extract(archive, tmp / name, max_bytes * UNZIPPED_FACTOR)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / name).is_dir():  # not a concurrent upload of the same package
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _described(final / name, address, data)


def _extract(archive: zipfile.ZipFile, dest: Path, max_unzipped: int) -> None:
    dest.mkdir(parents=True)
    total = 0
    for info in archive.infolist():
        parts = info.filename.replace("\\", "/").split("/")
        if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise InvalidSpec(f"package entry {info.filename!r} leaves the package's folder", field="body")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidSpec(f"package entry {info.filename!r} is a symlink; packages hold plain files",
                              field="body")
        target = dest.joinpath(*[p for p in parts if p])
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(target, "wb") as out:
            # Counted as written, not as declared: a zip's own sizes can lie.
            while chunk := src.read(1 << 20):
                total += len(chunk)
                if total > max_unzipped:
                    raise TooLarge(f"the package unzips to more than {max_unzipped} bytes", limit_bytes=max_unzipped)
                out.write(chunk)
        mode = (info.external_attr >> 16) & 0o755
        if mode:
            os.chmod(target, mode | 0o400)


def _described(path: Path, address: str, data: bytes) -> dict[str, Any]:
    return {"name": path.name, "path": str(path), "digest": address, "bytes": len(data)}


def upload_local_dirs(spec: dict[str, Any], upload: Callable[[str], str]) -> dict[str, Any]:
    """The spec with each runtime_env working_dir/py_modules entry that is a folder on this
    machine replaced by ``upload(folder)`` (the stored copy's path). Other paths and URIs are left
    for the server to judge; the caller's dict is not changed."""

    def stored(value: Any) -> Any:
        return upload(os.path.abspath(value)) if runtime_env.is_local(value) and os.path.isdir(value) else value

    return runtime_env.map_spec(spec, stored)
