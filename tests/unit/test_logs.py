"""Run logs on object storage, without Ray: uploaded whole as they grow, read back by their tail."""

from __future__ import annotations

import sys
import uuid

from scheduler import logs


def test_logs_on_s3_are_uploaded_as_they_grow_and_read_back(local_s3, tmp_path) -> None:
    root = f"{local_s3['root']}/unit-{uuid.uuid4().hex[:8]}/job_x"
    local = tmp_path / "rank-0.log"
    local.write_text("".join(f"line {i}\n" for i in range(5)))
    uploader = logs._Uploader(str(local), f"{root}/attempt-1/logs/rank-0.log", interval_s=3600)
    uploader.sync()
    body = logs.read_logs(root, 1, tail=2)
    assert body == {"attempt": 1, "folder": f"{root}/attempt-1/logs", "logs": {"rank-0": ["line 3", "line 4"]},
                    "error": None}
    with local.open("a") as f:
        f.write("".join(f"line {i}\n" for i in range(5, 100_000)))
    uploader.sync()  # the whole file again: object storage has no append
    assert logs.read_logs(root, 1, tail=3)["logs"]["rank-0"] == ["line 99997", "line 99998", "line 99999"]
    assert logs.read_logs(root, 2)["logs"] == {}  # an attempt that wrote nothing yet


def test_a_failed_upload_without_a_stderr_is_no_error(tmp_path, monkeypatch) -> None:
    uploader = logs._Uploader(str(tmp_path / "missing.log"), f"file://{tmp_path}/up.log", interval_s=3600)
    try:
        monkeypatch.setattr(sys, "__stderr__", None)  # a process started without one (pythonw, a closed fd 2)
        uploader.sync()  # the file is missing: the upload fails, and says so nowhere rather than raise
    finally:
        uploader._stop.set()


def test_storage_trainq_cannot_read_gives_a_reason_not_an_error(monkeypatch) -> None:
    assert logs.read_logs("gs://bucket/job_x", 1)["error"].startswith("logs are kept only on")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    body = logs.read_logs("s3://bucket/job_x", 1)
    assert body["logs"] == {} and body["error"].startswith("cannot read logs from s3://bucket/job_x/attempt-1/logs")
