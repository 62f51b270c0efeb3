"""Ray Train run names a person can tell apart in the Ray dashboard (and use as folder names)."""

from __future__ import annotations

from scheduler.config import train_run_name


def test_run_names_say_whose_job_and_which_attempt() -> None:
    assert train_run_name("finetune", "job_ab12", 2) == "finetune-job_ab12-attempt-2"
    assert train_run_name("my job/../x", "job_1", 1) == "my-job-..-x-job_1-attempt-1"
    assert train_run_name("///", "job_1", 3) == "job-job_1-attempt-3"
    long = train_run_name("n" * 100, "job_1", 1)
    assert long == "n" * 40 + "-job_1-attempt-1"
    assert "/" not in train_run_name("a/b", "job_1", 1)
