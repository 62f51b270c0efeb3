"""Runner events are typed at the core's edge; the dict form older runners send reads the same."""

from __future__ import annotations

import pytest

from scheduler.core.runner_events import Exited, HookSeen, Reported, Started, parse


def test_the_dict_form_parses_to_the_typed_events() -> None:
    base = {"job_id": "job_1", "attempt": 2}
    assert parse({**base, "kind": "started"}) == Started("job_1", 2)
    assert parse({**base, "kind": "hook"}) == HookSeen("job_1", 2)
    assert parse({**base, "kind": "report", "seq": 3, "at": 5.0, "metrics": {"step": 7}, "checkpoint_path": "/c",
                  "read_checkpoint": 1}) == Reported("job_1", 2, 3, 5.0, {"step": 7}, "/c", True)
    assert parse({**base, "kind": "exit", "outcome": "failed", "error": "boom", "failure": "user", "at": 9.0}) \
        == Exited("job_1", 2, "failed", 9.0, "boom", "user", None)
    typed = Exited("job_1", 2, "completed")
    assert parse(typed) is typed


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'teleport'"):
        parse({"kind": "teleport", "job_id": "job_1", "attempt": 1})
