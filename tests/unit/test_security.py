"""What a job may reach: the pure checks of scheduler/security.py and the package store."""

from __future__ import annotations

import io
import os
import stat
import zipfile

import pytest

from scheduler import packages, security
from scheduler.errors import InvalidSpec, TooLarge
from scheduler.spec import parse_spec


def test_list_settings_split_on_pathsep_or_commas_and_unset_differs_from_empty() -> None:
    assert security.parse_list(None) is None
    assert security.parse_list("") == [] and security.parse_list(" , ") == []
    assert security.parse_list(f"/a{os.pathsep}/b, /c") == ["/a", "/b", "/c"]


def test_is_under_resolves_dotdot_and_symlinks(tmp_path) -> None:
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    (allowed / "code").mkdir(parents=True)
    other.mkdir()
    (allowed / "link").symlink_to(other)
    assert security.is_under(str(allowed / "code"), [str(allowed)])
    assert security.is_under(str(allowed), [str(allowed)])
    assert not security.is_under(str(allowed / ".." / "other"), [str(allowed)])
    assert not security.is_under(str(allowed / "link"), [str(allowed)])  # leads to other/
    assert not security.is_under(str(tmp_path / "allowed-not"), [str(allowed)])  # a prefix is not a parent


@pytest.mark.parametrize("env,field", [
    ({"working_dir": "/etc"}, "runtime_env.working_dir"),
    ({"py_modules": ["s3://b/ok.zip", "/etc"]}, "runtime_env.py_modules.1"),
    ({"working_dir": "file:///etc/pkg.zip"}, "runtime_env.working_dir"),
    ({"working_dir": "local:///etc"}, "runtime_env.working_dir"),
    ({"working_dir": "ftp://host/pkg.zip"}, "runtime_env.working_dir"),
    ({"working_dir": "relative/dir"}, "runtime_env.working_dir"),
])
def test_head_node_folders_outside_the_allowed_ones_are_refused(tmp_path, env, field) -> None:
    with pytest.raises(InvalidSpec) as err:
        security.check_package_paths(env, [str(tmp_path)])
    assert err.value.fields["field"] == field and field in err.value.message


def test_allowed_folders_trainq_packages_and_remote_uris_pass(tmp_path) -> None:
    store = tmp_path / "storage" / "packages"
    security.check_package_paths({"working_dir": str(tmp_path / "ok" / "code")}, [str(tmp_path / "ok")])
    security.check_package_paths({"py_modules": [str(store / "d" / "lib")]}, [], [str(store)])
    security.check_package_paths({"working_dir": f"file://{tmp_path}/ok/x.zip"}, [str(tmp_path / "ok")])
    for uri in ("s3://b/x.zip", "gs://b/x.zip", "gcs://_ray_pkg_1.zip", "https://h/x.zip"):
        security.check_package_paths({"working_dir": uri}, [])
    security.check_package_paths({"working_dir": "/anything"}, None)  # unset: single-user mode


def test_no_allowed_folders_says_so_and_points_at_the_upload(tmp_path) -> None:
    with pytest.raises(InvalidSpec, match="no local folders are allowed here.*trainq submit"):
        security.check_package_paths({"working_dir": str(tmp_path)}, [])


@pytest.mark.parametrize("name", ["TRAINQ_RUNNER", "RAY_TRAIN_V2_ENABLED", "ray_address", "Trainq_X"])
def test_env_vars_may_not_set_trainq_or_ray_variables(name) -> None:
    with pytest.raises(InvalidSpec) as err:
        parse_spec({"entrypoint": "m:f", "runtime_env": {"env_vars": {"OK": "1", name: "x"}}})
    assert err.value.fields["field"] == "runtime_env" and f"env_vars may not set {name}" in err.value.message


def test_other_env_vars_pass() -> None:
    parse_spec({"entrypoint": "m:f", "runtime_env": {"env_vars": {"HF_TOKEN": "mine", "MY_RAY": "1"}}})
    assert security.reserved_env_vars(["A", "RAY_X", "TRAINQ_Y"]) == ["RAY_X", "TRAINQ_Y"]


def test_storage_path_only_under_the_roots_and_never_in_a_job_folder(tmp_path) -> None:
    root, extra = str(tmp_path / "storage"), "s3://bucket/teams"
    roots = [root, extra]
    security.check_storage_path(None, roots)
    security.check_storage_path(root, roots)
    security.check_storage_path(f"{root}/team-a", roots)
    security.check_storage_path(f"{extra}/a", roots)
    bad = [f"{tmp_path}/elsewhere", f"{root}/../elsewhere", f"{root}/job_0123abcd",
           f"{root}/team/job_0123abcd/run", "s3://bucket/other", f"{extra}/../secret",
           f"{extra}/x/job_00ff"]
    for path in bad:
        with pytest.raises(InvalidSpec) as err:
            security.check_storage_path(path, roots)
        assert err.value.fields["field"] == "storage_path", path


def test_storage_path_through_a_symlink_into_a_job_folder_is_refused(tmp_path) -> None:
    root = tmp_path / "storage"
    (root / "job_0123abcd").mkdir(parents=True)
    (root / "innocent").symlink_to(root / "job_0123abcd")
    with pytest.raises(InvalidSpec, match="inside a job's folder"):
        security.check_storage_path(str(root / "innocent"), [str(root)])


def test_secrets_come_from_the_environment_and_are_redacted() -> None:
    env = {"HF_TOKEN": "hf_abcdef", "EMPTY": "", "OTHER": "x"}
    assert security.secret_values(["HF_TOKEN", "EMPTY", "MISSING"], env) == {"HF_TOKEN": "hf_abcdef"}
    assert security.redact("token=hf_abcdef!", ["hf_abcdef"]) == "token=***!"
    assert security.redact("a b", ["a"]) == "a b"  # too short to redact safely


# -- uploaded packages -------------------------------------------------------------------------------
def _folder(tmp_path):
    src = tmp_path / "mylib"
    (src / "sub").mkdir(parents=True)
    (src / "__init__.py").write_text("X = 1\n")
    (src / "sub" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "sub" / "run.sh", 0o755)
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    return src


def test_a_folder_packs_to_stable_bytes_and_is_stored_once(tmp_path) -> None:
    src = _folder(tmp_path)
    data = packages.pack(str(src))
    assert data == packages.pack(str(src))  # content-addressed: same folder, same name
    root = tmp_path / "store"
    stored = packages.store(data, "mylib", str(root), 2**20)
    path = root / stored["digest"] / "mylib"
    assert stored["path"] == str(path) and stored["name"] == "mylib"
    assert (path / "__init__.py").read_text() == "X = 1\n"
    assert os.stat(path / "sub" / "run.sh").st_mode & 0o100
    assert not (path / "__pycache__").exists()
    assert packages.store(data, "mylib", str(root), 2**20) == stored
    assert [p.name for p in root.iterdir()] == [stored["digest"]]  # no temporary folder left


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.mark.parametrize("data", [
    _zip({"../escape.py": b"x"}), _zip({"/abs.py": b"x"}), _zip({"a/../../b.py": b"x"}),
    _zip({"ok.py": b"x"}, symlink="link"), b"not a zip",
])
def test_a_package_never_writes_outside_its_folder(tmp_path, data) -> None:
    with pytest.raises(InvalidSpec):
        packages.store(data, "pkg", str(tmp_path / "store"), 2**20)
    assert not (tmp_path / "escape.py").exists()
    store = tmp_path / "store"
    assert not store.exists() or not list(store.iterdir())  # nothing stored, nothing half-written


def test_package_names_and_sizes_are_limited(tmp_path) -> None:
    with pytest.raises(InvalidSpec, match="package name"):
        packages.store(_zip({"a": b"x"}), "../up", str(tmp_path), 2**20)
    with pytest.raises(TooLarge):
        packages.store(_zip({"a": b"x" * 5000}), "pkg", str(tmp_path), 100)
    bomb = _zip({"zeros": b"\0" * 100_000})  # compresses to a few hundred bytes
    with pytest.raises(TooLarge, match="unzips to more"):
        packages.store(bomb, "pkg", str(tmp_path), 2000)
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "f").write_bytes(os.urandom(5000))
    with pytest.raises(TooLarge):
        packages.pack(str(tmp_path / "big"), max_bytes=1000)


def test_a_list_setting_keeps_uris_whole() -> None:
    from scheduler.security import parse_list

    assert parse_list("/a:/b,s3://bucket/x:gs://other") == ["/a", "/b", "s3://bucket/x", "gs://other"]


def test_a_wildcard_storage_root_allows_any_path_but_never_a_job_folder() -> None:
    from scheduler.errors import InvalidSpec
    from scheduler.security import check_storage_path

    for path in ("/anywhere/x", "s3://bucket/p", "weird+scheme://x/y"):
        check_storage_path(path, ["*"])
    with pytest.raises(InvalidSpec, match="inside a job's folder"):
        check_storage_path("s3://bucket/job_0123456789ab/x", ["*"])
    with pytest.raises(InvalidSpec, match="outside the storage roots"):
        check_storage_path("/anywhere/x", ["/elsewhere"])


def test_unset_allowed_dirs_means_any_folder_for_one_user_and_none_with_users() -> None:
    assert security.allowed_dirs(None, with_users=False) is None
    assert security.allowed_dirs(None, with_users=True) == []
    assert security.allowed_dirs("", with_users=False) == []
    assert security.allowed_dirs("/a,/b", with_users=True) == ["/a", "/b"]


def test_serve_says_what_the_folder_rule_is_where_it_matters() -> None:
    from scheduler.cli.serve import folders_line

    assert folders_line("127.0.0.1", None, with_users=False) is None  # a laptop: nothing to say
    assert "any folder" in (folders_line("0.0.0.0", None, with_users=False) or "")
    for host in ("127.0.0.1", "0.0.0.0"):
        line = folders_line(host, None, with_users=True) or ""
        assert "no folder" in line and "with a users file" in line and "any folder" not in line
    assert "only under /data" in (folders_line("0.0.0.0", "/data", with_users=True) or "")
