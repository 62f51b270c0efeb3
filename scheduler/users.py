"""Identity, roles, quotas and fair-share weights from the users file (``TRAINQ_USERS_FILE``, YAML).

The file::

    default:                 # optional: what every user gets unless their own entry says otherwise
      weight: 1
      quota:
        guaranteed: {GPU: 1}
        max: {GPU: 4}
    users:
      alice:
        token: "a-long-random-string"    # plain text, hashed as soon as it is read
        role: admin                      # admin | user (default: user)
        weight: 2                        # fair-share weight, > 0 (default: the default's, else 1)
        quota:
          guaranteed: {GPU: 4, CPU: 16}  # per resource, merged over the default's
          max: {GPU: 8}
      bob:
        token: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

A token is either plain text (at least 8 characters) or ``sha256:<64 hex digits>``, the SHA-256 of
the token, so an admin never has to keep plain tokens on disk (``printf %s TOKEN | sha256sum``).
Only the hash is kept in memory; neither the token nor its hash is ever returned, logged or shown
in a ``repr`` or an error message. Resource names are free (``CPU``, ``GPU``, ``memory`` or any custom
Ray resource); amounts must be numbers ``>= 0`` and a user's guarantee may not exceed their max.
A name may be per accelerator type, ``<resource>:<type>`` (``max: {"GPU:A100": 2}``): it counts the
resources of the user's jobs placed on that type, beside the plain name, which counts all of them
(``policy.accelerators.per_type``).
A malformed file is refused as a whole with the line and the field at fault, e.g.
``users.yaml line 7: users.alice.quota.guaranteed.GPU: must be a number >= 0``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import TrainqError
from .policy.quota import Quota
from .spec import ACCELERATOR_PATTERN

ROLES = ("admin", "user")
MIN_TOKEN_CHARS = 8
_HASH_PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_TOP_KEYS = ("default", "users")
_USER_KEYS = ("token", "role", "weight", "quota")
_DEFAULT_KEYS = ("weight", "quota")
_QUOTA_KEYS = ("guaranteed", "max")
ACCELERATOR_RE = re.compile(ACCELERATOR_PATTERN)


class UsersFileError(TrainqError):
    """The users file is malformed; ``line`` (1-based) and ``field`` say where."""

    code = "invalid_users_file"

    def __init__(self, source: str, line: int | None, field_path: str, why: str) -> None:
        where = f"{source} line {line}" if line is not None else source
        super().__init__(f"{where}: {field_path}: {why}" if field_path else f"{where}: {why}",
                         source=source, line=line, field=field_path)


@dataclass(frozen=True)
class User:
    """One user. ``max`` None means no cap of its own (the cluster is the limit)."""

    name: str
    role: str
    token_hash: str = field(repr=False)  # hex SHA-256; kept out of repr so it never reaches a log
    weight: float = 1.0
    guaranteed: Mapping[str, float] = field(default_factory=dict)
    max: Mapping[str, float] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict[str, Any]:
        """The user as an API may show it: everything but the token hash."""
        return {"name": self.name, "role": self.role, "weight": self.weight, "guaranteed": dict(self.guaranteed),
                "max": None if self.max is None else dict(self.max)}


@dataclass(frozen=True)
class Users:
    """Every user of the file, and the default quotas for names the file does not list."""

    users: tuple[User, ...] = ()
    default_weight: float = 1.0
    default_guaranteed: Mapping[str, float] = field(default_factory=dict)
    default_max: Mapping[str, float] | None = None

    def by_token(self, token: str | None) -> User | None:
        """The user whose token this is, or None. Compares every hash in constant time."""
        if not token:
            return None
        presented = hash_token(token)
        found = None
        for user in self.users:  # no early exit: the time taken says nothing about which user matched
            if hmac.compare_digest(presented, user.token_hash):
                found = user
        return found

    def get(self, name: str) -> User | None:
        """The user called ``name``, or None."""
        return next((u for u in self.users if u.name == name), None)

    def quota_of(self, name: str) -> tuple[float, Mapping[str, float], Mapping[str, float] | None]:
        """(weight, guaranteed, max) of ``name``; the default's for a name the file does not list."""
        user = self.get(name)
        if user is None:
            return self.default_weight, dict(self.default_guaranteed), \
                None if self.default_max is None else dict(self.default_max)
        return user.weight, user.guaranteed, user.max

    def quota(self, name: str) -> Quota:
        """``name``'s quota as the policies take it (``policy.quota.Quota``)."""
        _, guaranteed, cap = self.quota_of(name)
        return Quota(dict(guaranteed), None if cap is None else dict(cap))

    def weight(self, name: str) -> float:
        """``name``'s fair-share weight."""
        return self.quota_of(name)[0]


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token, as stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_users(path: str | os.PathLike[str]) -> Users:
    """Read and validate a users file; raises ``UsersFileError`` naming the line and field."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise UsersFileError(str(p), None, "", f"cannot read it ({e.strerror or e})") from None
    return parse_users(text, p.name)


def users_from_env(environ: Mapping[str, str] | None = None) -> Users | None:
    """The users of ``$TRAINQ_USERS_FILE``, or None when it is not set (no per-user auth)."""
    path = (os.environ if environ is None else environ).get("TRAINQ_USERS_FILE")
    return load_users(path) if path else None


def parse_users(text: str, source: str = "users.yaml") -> Users:
    """Validate the text of a users file (``source`` names it in errors)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark is not None else None
        raise UsersFileError(source, line, "", f"not valid YAML ({e.problem})") from None
    except yaml.YAMLError as e:
        raise UsersFileError(source, None, "", f"not valid YAML ({e})") from None
    p = _Parser(source)
    if root is None:
        raise UsersFileError(source, None, "", "the file is empty; it needs a 'users:' mapping")
    top = p.mapping(root, "", _TOP_KEYS)
    d_guaranteed: dict[str, float] = {}
    d_max: dict[str, float] | None = None
    d_weight = 1.0
    if "default" in top:
        entry = p.mapping(top["default"][1], "default", _DEFAULT_KEYS)
        if "weight" in entry:
            d_weight = p.weight(entry["weight"][1], "default.weight")
        if "quota" in entry:
            d_guaranteed, d_max = p.quota(entry["quota"][1], "default.quota")
            p.check_within(d_guaranteed, d_max, "default.quota", entry["quota"][1])
    if "users" not in top:
        raise UsersFileError(source, 1, "users", "missing: the file must list its users")
    users_node = top["users"][1]
    users: list[User] = []
    seen_hashes: dict[str, str] = {}
    for name, (key_node, node) in p.mapping(users_node, "users", None).items():
        path = f"users.{name}"
        if not _NAME.fullmatch(name):
            raise UsersFileError(source, _line(key_node), path, "a user name is 1-64 letters, digits, '_', '.',"
                                 " '@' or '-', starting with a letter or digit")
        entry = p.mapping(node, path, _USER_KEYS)
        if "token" not in entry:
            raise UsersFileError(source, _line(node), f"{path}.token", "missing: every user needs a token")
        token_hash = p.token(entry["token"][1], f"{path}.token")
        if token_hash in seen_hashes:
            raise UsersFileError(source, _line(entry["token"][1]), f"{path}.token",
                                 f"the same token as user {seen_hashes[token_hash]!r}; tokens must be unique")
        seen_hashes[token_hash] = name
        role = "user"
        if "role" in entry:
            role_node = entry["role"][1]
            role = p.scalar(role_node, f"{path}.role")
            if role not in ROLES:
                raise UsersFileError(source, _line(role_node), f"{path}.role",
                                     f"must be one of {', '.join(ROLES)} (got {role!r})")
        weight = p.weight(entry["weight"][1], f"{path}.weight") if "weight" in entry else d_weight
        guaranteed, cap = dict(d_guaranteed), None if d_max is None else dict(d_max)
        if "quota" in entry:
            own_g, own_max = p.quota(entry["quota"][1], f"{path}.quota")
            guaranteed.update(own_g)
            if own_max is not None:
                cap = {**(cap or {}), **own_max}
            p.check_within(guaranteed, cap, f"{path}.quota", entry["quota"][1])
        users.append(User(name, role, token_hash, weight, guaranteed, cap))
    return Users(tuple(users), d_weight, d_guaranteed, d_max)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Parser:
    """Walks the composed YAML nodes, so every error can name the line it comes from."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._construct = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, path: str, why: str) -> UsersFileError:
        return UsersFileError(self.source, _line(node), path, why)

    def mapping(self, node: yaml.Node, path: str, allowed: tuple[str, ...] | None
                ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping's string keys -> (key node, value node); duplicates and unknown keys refused."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, path or "(top level)", "must be a mapping")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self._construct.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            here = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or not key:
                raise self.fail(key_node, path or "(top level)", "keys must be non-empty strings")
            if key in out:
                what = "user" if path == "users" else "key"
                raise self.fail(key_node, here, f"duplicate {what} (first at line {_line(out[key][0])})")
            if allowed is not None and key not in allowed:
                raise self.fail(key_node, here, f"unknown key; allowed: {', '.join(allowed)}")
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node: yaml.Node, path: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, path, "must be a single value")
        return self._construct.construct_object(node)

    def number(self, node: yaml.Node, path: str, why: str) -> float:
        value = self.scalar(node, path) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
                or math.isinf(value):
            raise self.fail(node, path, why)
        return float(value)

    def weight(self, node: yaml.Node, path: str) -> float:
        value = self.number(node, path, "must be a number > 0")
        if value <= 0:
            raise self.fail(node, path, "must be a number > 0")
        return value

    def resources(self, node: yaml.Node, path: str) -> dict[str, float]:
        out = {}
        for name, (_, value_node) in self.mapping(node, path, None).items():
            amount = self.number(value_node, f"{path}.{name}", "must be a number >= 0")
            if amount < 0:
                raise self.fail(value_node, f"{path}.{name}", "must be a number >= 0")
            resource, typed, kind = name.partition(":")
            if typed and (not resource or not ACCELERATOR_RE.fullmatch(kind)):
                raise self.fail(value_node, f"{path}.{name}", "a per-type limit is <resource>:<accelerator type>,"
                                " e.g. GPU:A100")
            out[name] = amount
        return out

    def quota(self, node: yaml.Node, path: str) -> tuple[dict[str, float], dict[str, float] | None]:
        entry = self.mapping(node, path, _QUOTA_KEYS)
        guaranteed = self.resources(entry["guaranteed"][1], f"{path}.guaranteed") if "guaranteed" in entry else {}
        cap = self.resources(entry["max"][1], f"{path}.max") if "max" in entry else None
        return guaranteed, cap

    def check_within(self, guaranteed: Mapping[str, float], cap: Mapping[str, float] | None, path: str,
                     node: yaml.Node) -> None:
        for name, amount in guaranteed.items():
            if cap is not None and name in cap and amount > cap[name]:
                raise self.fail(node, f"{path}.guaranteed.{name}", f"guarantees {amount:g} but the max is"
                                f" {cap[name]:g}; a guarantee cannot exceed the max")

    def token(self, node: yaml.Node, path: str) -> str:
        # Never put the value in a message: it is a secret (or the hash of one).
        if not isinstance(node, yaml.ScalarNode) or not isinstance(self._construct.construct_object(node), str):
            raise self.fail(node, path, "must be a string (quote it if it looks like a number)")
        value = str(node.value)
        if value.startswith(_HASH_PREFIX):
            digest = value[len(_HASH_PREFIX):]
            if not _HEX64.fullmatch(digest):
                raise self.fail(node, path, "'sha256:' must be followed by the 64 hex digits of the token's SHA-256")
            return digest.lower()
        if len(value) < MIN_TOKEN_CHARS:
            raise self.fail(node, path, f"too short: a token needs at least {MIN_TOKEN_CHARS} characters")
        return hash_token(value)
