"""The users file: parsing, defaults, token lookup, and errors that name the line and the field."""

from __future__ import annotations

import hashlib
import pickle
import textwrap

import pytest

from scheduler.policy.quota import Quota
from scheduler.users import User, UsersFileError, hash_token, load_users, parse_users, users_from_env

GOOD = textwrap.dedent("""\
    default:
      weight: 1
      quota:
        guaranteed: {GPU: 1}
        max: {GPU: 4, CPU: 32}
    users:
      alice:
        token: "alice-secret-token"
        role: admin
        weight: 2
        quota:
          guaranteed: {GPU: 4, CPU: 16}
          max: {GPU: 8}
      bob:
        token: "sha256:%s"
      carol:
        token: carol-plain-token
        quota:
          max: {custom_tpu: 2}
    """) % hashlib.sha256(b"bob-secret-token").hexdigest().upper()


def _error(text: str) -> str:
    with pytest.raises(UsersFileError) as e:
        parse_users(textwrap.dedent(text))
    return e.value.message


def test_a_good_file_merges_the_default_and_finds_users_by_token() -> None:
    users = parse_users(GOOD)
    alice, bob, carol = users.users
    assert (alice.role, alice.weight, dict(alice.guaranteed), dict(alice.max)) == \
        ("admin", 2.0, {"GPU": 4.0, "CPU": 16.0}, {"GPU": 8.0, "CPU": 32.0})
    assert (bob.role, bob.weight, dict(bob.guaranteed), dict(bob.max)) == ("user", 1.0, {"GPU": 1.0},
                                                                           {"GPU": 4.0, "CPU": 32.0})
    assert dict(carol.max) == {"GPU": 4.0, "CPU": 32.0, "custom_tpu": 2.0}
    assert users.by_token("alice-secret-token") is alice
    assert users.by_token("bob-secret-token") is bob  # given only as its hash, in upper case
    assert users.by_token("sha256:" + hash_token("bob-secret-token")) is None  # the hash is not a token
    assert users.by_token("nope-nope-nope") is None and users.by_token("") is None and users.by_token(None) is None
    assert users.quota_of("stranger") == (1.0, {"GPU": 1.0}, {"GPU": 4.0, "CPU": 32.0})
    assert alice.is_admin and not bob.is_admin
    assert users.quota("alice") == Quota({"GPU": 4.0, "CPU": 16.0}, {"GPU": 8.0, "CPU": 32.0})
    assert users.quota("stranger") == Quota({"GPU": 1.0}, {"GPU": 4.0, "CPU": 32.0})
    assert (users.weight("alice"), users.weight("stranger")) == (2.0, 1.0)


def test_no_default_means_no_cap_and_weight_one() -> None:
    users = parse_users("users:\n  dave:\n    token: dave-token-1\n")
    (dave,) = users.users
    assert (dave.weight, dict(dave.guaranteed), dave.max) == (1.0, {}, None)
    assert users.quota_of("anyone") == (1.0, {}, None)


def test_the_token_and_its_hash_never_show() -> None:
    users = parse_users(GOOD)
    alice = users.users[0]
    for text in (repr(alice), str(alice), repr(users), str(alice.public())):
        assert "alice-secret-token" not in text and alice.token_hash not in text
    assert "token" not in alice.public()


@pytest.mark.parametrize(("text", "expected"), [
    ("users:\n  alice:\n    token: alice-token-1\n    quota:\n      guaranteed:\n        GPU: -1\n",
     "users.yaml line 6: users.alice.quota.guaranteed.GPU: must be a number >= 0"),
    ("users:\n  alice:\n    token: alice-token-1\n    quota:\n      guaranteed: {GPU: .nan}\n",
     "users.yaml line 5: users.alice.quota.guaranteed.GPU: must be a number >= 0"),
    ("users:\n  alice:\n    token: alice-token-1\n    quota:\n      max: {GPU: lots}\n",
     "users.yaml line 5: users.alice.quota.max.GPU: must be a number >= 0"),
    ("users:\n  alice:\n    token: alice-token-1\n    role: root\n",
     "users.yaml line 4: users.alice.role: must be one of admin, user (got 'root')"),
    ("users:\n  alice:\n    token: alice-token-1\n  alice:\n    token: alice-token-2\n",
     "users.yaml line 4: users.alice: duplicate user (first at line 2)"),
    ("users:\n  alice:\n    token: same-token-1\n  bob:\n    token: same-token-1\n",
     "users.yaml line 5: users.bob.token: the same token as user 'alice'; tokens must be unique"),
    ("users:\n  alice:\n    token: alice-token-1\n    quota:\n      minimum: {GPU: 1}\n",
     "users.yaml line 5: users.alice.quota.minimum: unknown key; allowed: guaranteed, max"),
    ("users:\n  alice:\n    token: alice-token-1\n    gpus: 3\n",
     "users.yaml line 4: users.alice.gpus: unknown key; allowed: token, role, weight, quota"),
    ("users:\n  alice:\n    role: user\n", "users.yaml line 3: users.alice.token: missing: every user needs a token"),
    ("users:\n  alice:\n    token: short\n",
     "users.yaml line 3: users.alice.token: too short: a token needs at least 8 characters"),
    ("users:\n  alice:\n    token: 12345678901\n",
     "users.yaml line 3: users.alice.token: must be a string (quote it if it looks like a number)"),
    ("users:\n  alice:\n    token: sha256:abc\n",
     "users.yaml line 3: users.alice.token: 'sha256:' must be followed by the 64 hex digits of the token's SHA-256"),
    ("users:\n  alice:\n    token: alice-token-1\n    weight: 0\n",
     "users.yaml line 4: users.alice.weight: must be a number > 0"),
    ("users:\n  alice:\n    token: alice-token-1\n    quota: {guaranteed: {GPU: 9}, max: {GPU: 8}}\n",
     ("users.yaml line 4: users.alice.quota.guaranteed.GPU: guarantees 9 but the max is 8; a guarantee cannot"
      " exceed the max")),
    ("default:\n  quota: {guaranteed: {GPU: -2}}\nusers: {}\n",
     "users.yaml line 2: default.quota.guaranteed.GPU: must be a number >= 0"),
    ("groups: {}\n", "users.yaml line 1: groups: unknown key; allowed: default, users"),
    ("default: {weight: 1}\n", "users.yaml line 1: users: missing: the file must list its users"),
    ("users:\n  alice: [1, 2\n", "users.yaml line 3: not valid YAML"),
    ("users:\n  'bad name!':\n    token: alice-token-1\n", "users.yaml line 2: users.bad name!: a user name is"),
])
def test_a_malformed_file_names_the_line_and_the_field(text: str, expected: str) -> None:
    message = _error(text)
    assert message.startswith(expected), message
    assert "token-1" not in message and "token-2" not in message  # a secret never reaches a message


def test_the_file_from_the_environment_and_an_unreadable_one(tmp_path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(GOOD)
    assert users_from_env({}) is None
    users = users_from_env({"TRAINQ_USERS_FILE": str(path)})
    assert users is not None and [u.name for u in users.users] == ["alice", "bob", "carol"]
    with pytest.raises(UsersFileError, match="missing.yaml: cannot read it"):
        load_users(tmp_path / "missing.yaml")


def test_the_error_keeps_its_fields_across_pickling() -> None:
    with pytest.raises(UsersFileError) as e:
        parse_users("users:\n  alice:\n    token: alice-token-1\n    role: root\n")
    err = pickle.loads(pickle.dumps(e.value))
    assert err.fields == {"source": "users.yaml", "line": 4, "field": "users.alice.role"} and err.code == \
        "invalid_users_file"


def test_users_are_frozen() -> None:
    user = User("x", "user", hash_token("x-token-123"))
    with pytest.raises(AttributeError):
        user.role = "admin"  # type: ignore[misc]
