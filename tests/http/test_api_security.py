"""What a token holder can reach through the API, with no local folders allowed (TestClient, no Ray)."""

from __future__ import annotations

import os

import pytest
from fakes import FakeCluster, FakeLauncher
from fastapi.testclient import TestClient
from helpers import spec

from api.app import create_app
from api.backend import ServiceBackend
from scheduler.config import Settings
from scheduler.errors import InvalidSpec, TooLarge
from scheduler.http import Client
from scheduler.launcher import RayLauncher
from scheduler.service import SchedulerService


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:", allowed_dirs="",
                    storage_roots=str(tmp_path / "shared"), max_package_mb=0.05)


@pytest.fixture
def service(make_core, settings):
    core = make_core(FakeCluster({"CPU": 2}), FakeLauncher(), settings=settings)
    return SchedulerService(core, settings)


@pytest.fixture
def http(service, settings):
    with TestClient(create_app(ServiceBackend(service), token=None,
                               max_package_mb=settings.max_package_mb)) as c:
        yield c


def _refused(http, body: dict, field: str, status: int = 422) -> dict:
    r = http.post("/api/training/jobs", json=body)
    assert r.status_code == status, r.text
    error = r.json()
    assert error["error"] == "invalid"
    assert error["field"] == field and field.split(".")[-1] in error["message"]
    assert http.get("/api/training/jobs").json()["total"] == 0  # nothing stored
    return error


def test_a_head_node_folder_is_refused_and_nothing_is_stored(http, tmp_path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    # Schema-valid, but outside what this server's admin allows: 403 naming the field.
    _refused(http, spec(runtime_env={"working_dir": str(code)}), "runtime_env.working_dir", 403)
    _refused(http, spec(runtime_env={"working_dir": str(tmp_path / "storage" / "packages" / ".." / ".." / "code")}),
             "runtime_env.working_dir", 403)
    _refused(http, spec(runtime_env={"py_modules": ["/etc"]}), "runtime_env.py_modules.0", 403)


def test_storage_path_outside_the_roots_or_in_a_job_folder_is_refused(http, tmp_path) -> None:
    first = http.post("/api/training/jobs", json=spec(storage_path=str(tmp_path / "shared" / "team"))).json()
    assert first["spec"]["storage_path"] == str(tmp_path / "shared" / "team")
    http.post(f"/api/training/cancel/{first['job_id']}")
    before = http.get("/api/training/jobs").json()["total"]
    # Outside the admin's roots (their policy: 403), or inside a job's folder (the schema's: 422), naming the field.
    for path, status in ((str(tmp_path / "elsewhere"), 403), (str(tmp_path / "storage" / first["job_id"]), 422),
                         (str(tmp_path / "shared" / "team" / first["job_id"] / "x"), 422)):
        r = http.post("/api/training/jobs", json=spec(storage_path=path))
        assert r.status_code == status and r.json()["field"] == "storage_path", path
    assert http.get("/api/training/jobs").json()["total"] == before


def test_trainq_and_ray_variables_are_refused(http) -> None:
    for name in ("TRAINQ_RUNNER", "RAY_TRAIN_V2_ENABLED"):
        error = _refused(http, spec(runtime_env={"env_vars": {name: "x"}}), "runtime_env")
        assert f"env_vars may not set {name}" in error["message"]


def _client(http) -> Client:
    client = Client("http://testserver")
    client.http = http  # TestClient is an httpx.Client: the real client code over the app
    return client


def test_the_http_client_uploads_its_own_folder_when_no_folder_is_allowed(http, tmp_path) -> None:
    code = tmp_path / "mine" / "code"
    (code / "lib").mkdir(parents=True)
    (code / "train.py").write_text("def main(): pass\n")
    (code / "lib" / "__init__.py").write_text("")
    api = _client(http)
    job = api.submit(spec(entrypoint="train:main",
                          runtime_env={"working_dir": str(code), "py_modules": [str(code / "lib"), "s3://b/x.zip"]}))
    env = job["spec"]["runtime_env"]
    packages_root = str(tmp_path / "storage" / "packages") + os.sep
    assert env["working_dir"].startswith(packages_root) and env["working_dir"].endswith(os.sep + "code")
    assert env["py_modules"][0].startswith(packages_root) and env["py_modules"][0].endswith(os.sep + "lib")
    assert env["py_modules"][1] == "s3://b/x.zip"
    with open(os.path.join(env["working_dir"], "train.py")) as f:
        assert f.read() == "def main(): pass\n"
    again = api.upload(str(code))
    assert again["path"] == env["working_dir"]  # content-addressed


def test_an_upload_too_large_is_413_and_a_bad_one_422(http, tmp_path) -> None:
    r = http.post("/api/training/packages", params={"name": "big"}, content=b"x" * 60_000,
                  headers={"Content-Type": "application/zip"})
    assert r.status_code == 413 and r.json()["error"] == "too_large" and "TRAINQ_MAX_PACKAGE_MB" in r.json()["message"]
    big = tmp_path / "big"
    big.mkdir()
    (big / "data.bin").write_bytes(os.urandom(60_000))
    with pytest.raises(TooLarge):
        _client(http).submit(spec(runtime_env={"working_dir": str(big)}))
    r = http.post("/api/training/packages", params={"name": "x"}, content=b"not a zip")
    assert r.status_code == 422 and "not a zip" in r.json()["message"]
    r = http.post("/api/training/packages", params={"name": "../up"}, content=b"")
    assert r.status_code == 422 and r.json()["field"] == "name"
    assert not (tmp_path / "storage" / "packages").exists() or \
        not [p for p in (tmp_path / "storage" / "packages").iterdir()]


def test_a_folder_the_client_cannot_see_is_judged_by_the_server(http) -> None:
    with pytest.raises(InvalidSpec) as err:
        _client(http).submit(spec(runtime_env={"working_dir": "/no/such/folder/here"}))
    assert err.value.fields["field"] == "runtime_env.working_dir"


def test_the_workers_get_the_secrets_and_the_jobs_own_variables_win(settings, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_scheduler")
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret")
    launcher = RayLauncher(Settings(secret_env="HF_TOKEN,WANDB_API_KEY,UNSET_ONE"), None, None)
    env = launcher.worker_env({"runtime_env": {"env_vars": {"WANDB_API_KEY": "users-own"}}})
    assert env["env_vars"]["HF_TOKEN"] == "hf_from_the_scheduler"
    assert env["env_vars"]["WANDB_API_KEY"] == "users-own" and "UNSET_ONE" not in env["env_vars"]
    assert env["env_vars"]["RAY_TRAIN_ENABLE_STATE_TRACKING"] == "1"


def _server_folder_submit(make_core, tmp_path, users_yaml: str | None, token: str) -> tuple[int, dict, int]:
    """Submit a job naming a folder on the server's machine with TRAINQ_ALLOWED_DIRS unset:
    (status, body, jobs stored)."""
    from scheduler.users import parse_users

    code = tmp_path / "server-code"
    code.mkdir(exist_ok=True)
    unset = Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:", allowed_dirs=None)
    core = make_core(FakeCluster({"CPU": 2}), FakeLauncher(), settings=unset)
    core.users = parse_users(users_yaml) if users_yaml else None
    app = create_app(ServiceBackend(SchedulerService(core, unset)), token=None if users_yaml else token,
                     users=core.users)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as http:
        r = http.post("/api/training/jobs", json=spec(runtime_env={"working_dir": str(code)}))
        return r.status_code, r.json(), http.get("/api/training/jobs").json()["total"]


def test_with_a_users_file_unset_allowed_dirs_means_no_server_folder(make_core, tmp_path) -> None:
    users = 'users:\n  alice:\n    token: "alice-token-0001"\n'
    status, body, stored = _server_folder_submit(make_core, tmp_path, users, "alice-token-0001")
    assert status == 403, body
    assert body["field"] == "runtime_env.working_dir" and "no local folders are allowed here" in body["message"]
    assert "trainq submit --working-dir" in body["message"]  # the way out: upload the folder
    assert stored == 0


def test_without_a_users_file_unset_allowed_dirs_keeps_any_server_folder(make_core, tmp_path) -> None:
    status, body, stored = _server_folder_submit(make_core, tmp_path, None, "laptop-token")
    assert status == 201, body
    assert body["spec"]["runtime_env"]["working_dir"] == str(tmp_path / "server-code") and stored == 1
