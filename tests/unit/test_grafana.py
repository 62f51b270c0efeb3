"""The shipped Grafana dashboard loads as JSON and charts the metrics the scheduler records."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "api" / "grafana" / "trainq.json"


def test_the_dashboard_queries_trainqs_metrics() -> None:
    source = (Path(__file__).resolve().parents[2] / "scheduler" / "metrics.py").read_text()
    recorded = set(re.findall(r'"(trainq_[a-z_]+)"', source))
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "trainq" and dash["panels"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    queried = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"ray_(trainq_[a-z_]+)", e)}
    # Every metric the scheduler records has a panel (Ray prefixes each name with ray_).
    assert recorded <= queried, recorded - queried
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "session"}
