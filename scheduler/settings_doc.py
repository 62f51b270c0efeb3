"""The settings reference, ``docs/settings.md``, built from the code so that it cannot drift.

``python -m scheduler.settings_doc`` prints it and ``python -m scheduler.settings_doc --write``
writes ``docs/settings.md``; ``tests/unit/test_settings_doc.py`` checks that the file is what
``render()`` makes and that the ``TRAINQ_`` variables the code reads are exactly the ones documented.

Where each part comes from:

- the scheduler's settings, ``config.Settings``: one row per field. The variable is the one its
  default factory reads, what it takes follows from the function that parses it (``PARSERS``),
  the default is what the factory returns with the variable unset (the home folder shown as
  ``~``), and the text is the ``#:`` comment above the field in ``config.py`` (the convention
  Sphinx reads), or ``FIELD_NOTES`` below for a field without one;
- the variables read outside ``Settings`` (the CLI, the API process, the training workers):
  ``OTHERS`` below, one entry each, checked against the source;
- "read in": every module under ``scheduler/`` and ``api/`` whose code holds the variable's name
  as a whole string literal (``os.environ.get("TRAINQ_X")``, ``env_float("TRAINQ_X", ...)``,
  ``RUNNER_ENV = "TRAINQ_X"``); a name inside a longer string (a docstring, a help text) is not a read.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from unittest import mock

from . import config
from .http import DEFAULT_URL

ROOT = Path(__file__).resolve().parent.parent
#: The packages scanned for variables read.
SOURCE_DIRS = ("scheduler", "api")
DOC_PATH = ROOT / "docs" / "settings.md"
#: A whole string literal that names one of trainq's variables (never the bare prefix ``TRAINQ_``).
VARIABLE_RE = re.compile(r"TRAINQ_[A-Z0-9_]*[A-Z0-9]")
#: An environment variable's name, as a default factory passes it to ``os.environ.get`` or ``env_*``.
_ENV_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*[A-Z0-9]")
_THIS_FILE = Path(__file__).resolve()


@dataclasses.dataclass(frozen=True)
class Other:
    """A variable read outside ``Settings``: who reads it, what it does, and its default as shown
    (None: the literal the code passes with the name, e.g. ``env_float("TRAINQ_X", 60)``)."""

    reader: str
    text: str
    default: str | None = None


#: Words for ``Settings`` fields that have no ``#:`` comment in ``config.py``, keyed by variable.
FIELD_NOTES: dict[str, str] = {
    "TRAINQ_STORAGE": "The storage root: every job's runs, checkpoints and logs go under "
                      "``<root>/<job_id>/``. A local folder, or a URI such as ``s3://bucket/prefix``; "
                      "on several nodes it must be shared (NFS at the same path everywhere, or S3). "
                      "``trainq serve --storage`` overrides it.",
    "TRAINQ_DB": "The job registry: an SQLite file on the scheduler's node (a path or ``sqlite:///PATH``; its "
                 "event log is ``<file>.events`` next to it), or a Postgres database by URL, "
                 "``postgresql://USER:PASSWORD@HOST:PORT/DB`` (jobs, history, usage and the event log in one "
                 "database that outlives the head node; the password is never shown). Any other form is refused. "
                 "``trainq serve --db`` overrides it.",
}

#: Variables read outside ``Settings``, keyed by name. The test fails when one is no longer read.
OTHERS: dict[str, Other] = {
    "TRAINQ_HOME": Other(
        "`trainq serve`, the scheduler",
        "trainq's own folder: the default storage root (``storage/``) and registry (``trainq.db``), "
        "the demo's data (``demo/``), and uploaded packages (``packages/``) when the storage root is a URI.",
        "`~/.trainq`"),
    "TRAINQ_URL": Other(
        "the CLI", "The API the ``trainq`` commands talk to (``--url`` overrides it).", f"`{DEFAULT_URL}`"),
    "TRAINQ_API_TOKEN": Other(
        "`trainq serve`, the CLI",
        "The one API token: with it (and no users file) every ``/api/`` route but ``/api/ui/config`` "
        "needs ``Authorization: Bearer <token>`` (a WebSocket: ``?token=`` or a first message); "
        "``/health``, the page, ``/docs`` and ``/openapi.json`` do not. The CLI sends it (``--token`` "
        "overrides it). With a users file the server takes only the users' own tokens.",
        "unset"),
    "TRAINQ_API_TOKEN_FILE": Other(
        "`trainq serve`, the CLI",
        "A file holding the token, read when ``TRAINQ_API_TOKEN`` is unset (an empty file is an error).",
        "unset"),
    "TRAINQ_SHUTDOWN_GRACE_S": Other(
        "`trainq serve`",
        "With an embedded Ray: how long (seconds) a graceful stop (Ctrl-C, SIGTERM) waits for running "
        "jobs to checkpoint and pause (``--shutdown-grace`` overrides it)."),
    "TRAINQ_LOCAL_CHANNEL": Other(
        "the API process",
        "On: the API's batched calls reach the scheduler actor over its Unix socket when both run on "
        "one machine, and through Ray otherwise; off: always through Ray (docs/design.md, "
        "\"The local channel\")."),
    "TRAINQ_LOG_UPLOAD_S": Other(
        "the runner host, training workers",
        "With ``s3://`` storage: how often (seconds) a process's log copy is uploaded when it grew "
        "(object storage has no append); it is uploaded once more at the end."),
    "TRAINQ_RUNNER": Other(
        "training workers",
        "Not a setting: trainq sets it in each training worker to the name of the attempt's runner, "
        "which ``scheduler.train``'s hook asks. A job's ``env_vars`` may not set it (no ``TRAINQ_`` name).",
        "set by trainq"),
    "TRAINQ_RUNNER_HOST": Other(
        "training workers",
        "Not a setting: trainq sets it in each training worker to the name of the runner host that "
        "carries the attempt (one of several, ``TRAINQ_RUNS_PER_HOST``), which the hook calls.",
        "set by trainq"),
}


# -- what the code reads ---------------------------------------------------------------------------
def _source_files(root: Path = ROOT) -> Iterable[Path]:
    for package in SOURCE_DIRS:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" not in path.parts and path.resolve() != _THIS_FILE:
                yield path


def variables_read(root: Path = ROOT, also: Iterable[str] = ()) -> dict[str, list[str]]:
    """Every ``TRAINQ_`` variable (and every name in ``also``) named by a whole string literal
    under ``scheduler/`` and ``api/`` (this module left out), with the modules that name it."""
    extra = set(also)
    found: dict[str, set[str]] = {}
    for path in _source_files(root):
        for value in _string_literals(path):
            if VARIABLE_RE.fullmatch(value) or value in extra:
                found.setdefault(value, set()).add(path.relative_to(root).as_posix())
    return {name: sorted(files) for name, files in sorted(found.items())}


def _string_literals(path: Path) -> Iterable[str]:
    """The module's string constants; for a module that does not parse (someone is mid-edit), the
    quoted words that look like a variable's name, so one broken file does not hide the rest."""
    text = path.read_text()
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError:
        return [m.group(2) for m in re.finditer(r"(['\"])([A-Z][A-Z0-9_]*[A-Z0-9])\1", text)]
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def literal_defaults(root: Path = ROOT) -> dict[str, set[Any]]:
    """The defaults the code passes next to a variable's name, as literals: ``5`` for
    ``os.environ.get("TRAINQ_X", "5")`` or ``env_float("TRAINQ_X", 5)``."""
    found: dict[str, set[Any]] = {}
    for path in _source_files(root):
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except SyntaxError:
            continue  # see _string_literals
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and len(node.args) >= 2):
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)
                    and VARIABLE_RE.fullmatch(first.value)):
                continue
            try:
                value = ast.literal_eval(node.args[1])
            except ValueError:
                continue
            found.setdefault(first.value, set()).add(value)
    return found


# -- the Settings fields ----------------------------------------------------------------------------
#: What a variable takes, by the function ``config.py`` parses it with (the outermost of
#: ``float(os.environ.get(...))``). A parser missing here makes ``render()`` fail: add it.
PARSERS: dict[str, str] = {
    "get": "text",
    "float": "a number",
    "env_float": "a number ≥ 0",
    "_env_positive": "a number > 0",
    "env_switch": "on/off",
    "env_int": "a whole number ≥ 1",
    "_env_keep": "a whole number ≥ 1, or `all`",
}


@dataclasses.dataclass(frozen=True)
class SettingRow:
    variable: str
    field: str
    takes: str
    default: str
    text: str


@dataclasses.dataclass(frozen=True)
class _FieldSource:
    variable: str | None
    parser: str | None
    comment: str


def _name_of(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _field_sources() -> dict[str, _FieldSource]:
    """For each ``Settings`` field: the variable its default factory reads, the function that parses
    it, and the field's ``#:`` comment."""
    source = inspect.getsource(config)
    lines = source.splitlines()
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    out: dict[str, _FieldSource] = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.value is not None):
            continue
        variable = parser = None
        for call in ast.walk(node.value):  # outermost first: float(os.environ.get(...)) is "float"
            if not isinstance(call, ast.Call):
                continue
            for arg in call.args[:1]:
                inner = arg.args[0] if isinstance(arg, ast.Call) and arg.args else arg
                if (variable is None and isinstance(inner, ast.Constant) and isinstance(inner.value, str)
                        and _ENV_NAME_RE.fullmatch(inner.value)):
                    variable, parser = inner.value, _name_of(call.func)
        comment: list[str] = []
        i = node.lineno - 2  # the line above the field (0-based)
        while i >= 0 and lines[i].strip().startswith("#:"):
            comment.insert(0, lines[i].strip()[2:].strip())
            i -= 1
        out[node.target.id] = _FieldSource(variable, parser, " ".join(comment))
    return out


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`1` (on)" if value else "`0` (off)"
    if isinstance(value, float):
        return f"`{value:g}`"
    if value == "":
        return "empty"
    return f"`{value}`"


_HOME = "/__home__"  # a stand-in home folder, shown as ``~``


def _default_of(factory: Callable[[], Any], variables: Iterable[str]) -> Any:
    """What ``factory`` returns with none of ``variables`` (nor ``TRAINQ_HOME``) set, with the home
    folder shown as ``~``, so the text is the same on every machine."""
    env = {k: v for k, v in os.environ.items() if k not in set(variables) | {"TRAINQ_HOME", "HOME"}}
    with mock.patch.dict(os.environ, {**env, "HOME": _HOME}, clear=True):
        value = factory()
    return "~" + value[len(_HOME):] if isinstance(value, str) and value.startswith(_HOME) else value


def setting_rows() -> list[SettingRow]:
    """One row per ``Settings`` field that an environment variable sets, in the class's order."""
    sources = _field_sources()
    rows = []
    for f in dataclasses.fields(config.Settings):
        src = sources.get(f.name)
        if src is None or src.variable is None:
            continue
        if f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise ValueError(f"Settings.{f.name} reads {src.variable} but has no default factory")
        if src.parser not in PARSERS:
            raise ValueError(f"Settings.{f.name} ({src.variable}) is parsed by {src.parser!r}: say what "
                             "it takes in settings_doc.PARSERS")
        text = src.comment or FIELD_NOTES.get(src.variable, "")
        if not text:
            raise ValueError(f"Settings.{f.name} ({src.variable}) has no '#:' comment in config.py and no "
                             "entry in settings_doc.FIELD_NOTES: say what it does in one of them")
        default = _show(_default_of(f.default_factory, [src.variable]))
        rows.append(SettingRow(src.variable, f.name, PARSERS[src.parser], default, text))
    return rows


# -- the document ------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("``", "`").replace("|", "\\|")


def _other_default(name: str, other: Other, literals: dict[str, set[Any]]) -> str:
    if other.default is not None:
        return other.default
    values = literals.get(name, set())
    if len(values) != 1:
        raise ValueError(f"{name}: the code passes {sorted(map(repr, values)) or 'no'} literal default(s); "
                         "give its default in settings_doc.OTHERS")
    (value,) = values
    return _show(value)


def render(root: Path = ROOT) -> str:
    """``docs/settings.md``: every variable trainq reads, with its default and what it does."""
    rows = setting_rows()
    read = variables_read(root, also=[r.variable for r in rows])

    def where(name: str) -> str:
        return ", ".join(f"`{p}`" for p in read.get(name, [])) or "(not read under scheduler/ or api/)"

    out = [
        "# trainq settings",
        "",
        "<!-- Generated by `python -m scheduler.settings_doc --write` from scheduler/config.py and",
        "     scheduler/settings_doc.py; tests/unit/test_settings_doc.py fails when this file is stale. -->",
        "",
        "The environment variables trainq's code reads (under `scheduler/` and `api/`), besides the",
        "secrets `TRAINQ_SECRET_ENV` names and what Ray itself reads. A name ending in `_S` is seconds",
        "(a fraction is fine), `_MB` megabytes; on/off takes `1` or `0` (also `true`/`false`, `on`/`off`,",
        "`yes`/`no`); a list takes commas or `os.pathsep` between its entries.",
        "",
        "## The scheduler",
        "",
        "Read into `scheduler.config.Settings` by `trainq serve` (or `scheduler.connect()`), which",
        "creates the scheduler actor with them; the actor keeps them across Ray's restarts of it. An",
        "existing actor keeps the settings it was created with, so set these in the environment of",
        "the `trainq serve` that first starts the scheduler.",
        "",
        "| variable | takes | default | what it does | read in |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        out.append(f"| `{row.variable}` | {row.takes} | {row.default} | {_cell(row.text)} "
                   f"(`Settings.{row.field}`) | {where(row.variable)} |")
    out += [
        "",
        "## Other processes",
        "",
        "| variable | read by | default | what it does | read in |",
        "| --- | --- | --- | --- | --- |",
    ]
    literals = literal_defaults(root)
    for name, other in sorted(OTHERS.items()):
        default = _other_default(name, other, literals)
        out.append(f"| `{name}` | {other.reader} | {default} | {_cell(other.text)} | {where(name)} |")
    out += [
        "",
        "A job's `runtime_env.env_vars` may not set a variable whose name starts with `TRAINQ_` or",
        "`RAY_`. The tests and the setup script read a few of their own, not listed here:",
        "`TRAINQ_FUZZ_S`, `TRAINQ_FUZZ_SEED` (tests/http/test_fuzz_api.py), `TRAINQ_UPDATE_SCREENSHOT`",
        "(tests/browser/test_page.py) and `TRAINQ_TORCH_SPEC` (scripts/setup.sh).",
        "",
    ]
    return "\n".join(out)


def documented() -> set[str]:
    """The ``TRAINQ_`` variables ``render()`` documents."""
    return {r.variable for r in setting_rows() if r.variable.startswith("TRAINQ_")} | set(OTHERS)


def main(argv: list[str] | None = None) -> int:
    """``python -m scheduler.settings_doc [--write]``."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--write"]):
        print("usage: python -m scheduler.settings_doc [--write]", file=sys.stderr)
        return 2
    text = render()
    if args == ["--write"]:
        DOC_PATH.write_text(text)
        print(f"wrote {DOC_PATH.relative_to(ROOT)}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
