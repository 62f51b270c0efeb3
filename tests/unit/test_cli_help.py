"""What `trainq serve --help` tells a person who has to secure the server."""

from __future__ import annotations

import contextlib
import io

import pytest

from scheduler.cli import build_parser


def test_serve_help_names_the_token_settings_and_the_users_file() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(out.getvalue().split())
    for name in ("TRAINQ_API_TOKEN", "TRAINQ_API_TOKEN_FILE", "TRAINQ_USERS_FILE", "--insecure-no-token",
                 "TRAINQ_ALLOWED_DIRS"):
        assert name in text, name
