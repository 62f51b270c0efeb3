"""How the CLI's tables show a value (``scheduler.cli.render``)."""

from __future__ import annotations

from rich.console import Console

from scheduler.cli import render


def test_a_cell_shows_numbers_to_four_digits_and_nothing_as_a_dash() -> None:
    assert render.cell(0.014402) == "0.0144" and render.cell(25.416999) == "25.42" and render.cell(3) == "3"
    assert render.cell(None) == render.cell("") == "-"
    assert render.cell("2026-12-05T19:01:08.113Z") == "2026-12-05 19:01:08"


def test_the_usage_table_of_a_user_less_cluster() -> None:
    body = {"by": "user", "since": None, "until": "2026-12-05T19:01:08.113Z", "checkpoint_bytes": 36,
            "rows": [{"user": "", "jobs": 1, "attempts": 2, "gpu_hours": 0.0, "cpu_hours": 0.014402,
                      "lost_work_s": 0.754, "preemptions": 0, "fair_share_usage": 25.416999, "checkpoint_bytes": 36}]}
    console = Console(width=200, record=True)
    console.print(render.usage(body))
    out = console.export_text()
    assert "0.0144" in out and "25.42" in out and "0.014402" not in out
    row = out.splitlines()[-1].split()
    assert row[0] == "-" and row[1] == "1", out  # no owner: a dash, not an empty column
