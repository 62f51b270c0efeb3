"""Job ids, request keys and timestamps as trainq makes and shows them."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from scheduler import jobs
from scheduler.client import new_key
from scheduler.security import JOB_FOLDER_RE


def test_job_ids_and_request_keys_are_unique_and_sort_by_creation() -> None:
    first = [jobs.new_job_id() for _ in range(5000)]
    keys = [new_key() for _ in range(5000)]
    time.sleep(0.002)
    later, later_key = jobs.new_job_id(), new_key()
    assert len(set(first)) == len(first) and len(set(keys)) == len(keys)
    assert all(JOB_FOLDER_RE.match(job_id) for job_id in first)  # still a valid storage folder name
    # Time-ordered (a new row goes at the end of its indexes): one made later sorts after all.
    assert max(first) < later and max(keys) < later_key and later_key.startswith("tq-")


def test_ids_made_in_one_process_never_repeat_and_strictly_increase_even_within_a_millisecond() -> None:
    ids = [jobs.ordered_id() for _ in range(100_000)]  # ~1,000 a millisecond: 32 random bits alone repeat
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and all(len(i) == 20 for i in ids)


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False) | st.integers(min_value=0, max_value=4_000_000_000))
def test_iso_formats_as_datetime_does_whether_remembered_or_not(ts: float) -> None:
    expected = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert jobs.iso(ts) == expected and jobs.iso(ts) == expected  # formatted, then remembered
    jobs._format.cache_clear()
    assert jobs.iso(ts) == expected and jobs.iso(None) is None


def test_iso_remembers_a_bounded_number_of_instants_and_formats_runs_within_a_second() -> None:
    for i in range(10_000):  # seven instants a second: the second's text is reused, not kept stale
        ts = 1_700_000_000 + i / 7
        assert jobs.iso(ts) == datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
    assert 0 < jobs._format.cache_info().currsize <= 4096
