"""The built-in HuggingFace workload on a real local Ray with 2 CPU workers, and the model cache."""

from __future__ import annotations

import time

import httpx
import pytest
from helpers import API_TOKEN

from scheduler.demo import demo_spec
from scheduler.errors import InvalidSpec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_fine_tune_pause_resume_continues_at_the_next_step(tq, tmp_path) -> None:
    c = tq.c
    spec = demo_spec(steps=24, data=str(tmp_path / "data.txt"))
    spec["config"]["save_steps"] = 100  # only the pause and the end checkpoint
    job_id = tq.submit(spec)["job_id"]
    c.wait(job_id, "running", timeout_s=180)
    deadline = time.monotonic() + 180
    while not any((r["metrics"].get("global_step") or 0) >= 6 for r in c.reports(job_id)):
        job = c.get(job_id)
        assert time.monotonic() < deadline and job["status"] == "running", job["error"]
        time.sleep(0.2)
    c.pause(job_id)
    paused = c.wait(job_id, timeout_s=120)
    assert paused["status"] == "paused"
    paused_step = next(ck["metrics"]["global_step"] for ck in c.checkpoints(job_id)
                       if ck["path"] == paused["checkpoint_path"])
    c.resume(job_id)
    done = c.wait(job_id, timeout_s=300)
    assert done["status"] == "completed", done["error"]

    # One log report per trained step; checkpoint reports repeat the last logged loss, so skip them.
    losses = [(r["attempt"], r["metrics"]["global_step"], r["metrics"]["loss"])
              for r in c.reports(job_id) if "loss" in r["metrics"] and not r["checkpoint_path"]]
    first = [s for a, s, _ in losses if a == 1]
    second = [s for a, s, _ in losses if a == 2]
    assert first[-1] == paused_step  # the pause checkpoint is where attempt 1 stopped
    assert second[0] == paused_step + 1  # resume continues at the next step
    assert first + second == list(range(1, 25))  # every step once: none trained twice, none skipped
    assert losses[-1][2] < losses[0][2]
    assert done["warning"] is None

    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(done["checkpoint_path"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(done["checkpoint_path"])
    out = model.generate(**tokenizer("the queue", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > 2


def test_bad_workload_config_is_refused_at_submit(tq) -> None:
    with pytest.raises(InvalidSpec, match="max_steps or num_train_epochs"):
        tq.c.submit({"workload": "hf-causal-lm", "config": {"model": "x", "train_files": ["/etc/hostname"]}})
    with pytest.raises(InvalidSpec, match="not a file"):
        tq.c.submit({"workload": "hf-causal-lm", "config": {"model_config": {"model_type": "gpt2"},
                                                            "train_files": ["/no/data.txt"], "max_steps": 1}})
    with pytest.raises(InvalidSpec, match="trainq models pull never/pulled"):
        tq.c.submit({"workload": "hf-causal-lm", "config": {"model": "never/pulled", "max_steps": 1,
                                                            "train_files": ["/etc/hostname"]}})


def test_model_download_shows_progress_and_the_cached_model_trains(server, tq, tmp_path) -> None:
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30) as http:
        r = http.post("/api/models", json={"model_id": "tiny/gpt2"})
        assert r.status_code == 202 and r.json()["status"] == "downloading"
        seen = []
        deadline = time.monotonic() + 60
        while True:
            entry = http.get("/api/models/tiny/gpt2").json()
            seen.append((entry["bytes_done"], entry["bytes_total"]))
            if entry["status"] != "downloading" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert entry["status"] == "ready", entry["error"]
        total = entry["bytes_total"]
        assert total > 100_000 and seen[-1] == (total, total)
        assert any(0 < done < total for done, _ in seen)  # progress in between, not just 0 and 100%
        assert [m["model_id"] for m in http.get("/api/models").json()] == ["tiny/gpt2"]
        missing = http.post("/api/models", json={"model_id": "nobody/nothing"}).json()
        while missing["status"] == "downloading":
            time.sleep(0.2)
            missing = http.get("/api/models/nobody/nothing").json()
        assert missing["status"] == "failed" and "NotFound" in missing["error"]
        assert http.post("/api/models", json={"model_id": "../etc"}).status_code == 422

    spec = demo_spec(steps=3, data=str(tmp_path / "data.txt"))
    spec["num_workers"] = 1
    spec["config"].pop("model_config")
    spec["config"]["model"] = "tiny/gpt2"
    job = tq.submit(spec)
    done = tq.c.wait(job["job_id"], timeout_s=240)
    assert done["status"] == "completed", done["error"]
    assert done["metrics"]["global_step"] == 3

    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        assert http.delete("/api/models/tiny/gpt2").json()["status"] == "deleted"
        assert http.get("/api/models/tiny/gpt2").status_code == 404
