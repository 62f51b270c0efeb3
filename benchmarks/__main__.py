"""``python -m benchmarks [--full] [--only NAME ...] [--json FILE]``: every measure against its
baseline side by side in one run, printed as one table (ratios, so they hold on a noisy machine)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from . import (
    common,
    control_plane,
    drain,
    elastic,
    elastic_real,
    fairness,
    footprint,
    hook,
    launch_stall,
    overhead,
    packing,
    pause,
    preemption,
    report_poll,
    scale,
    store,
    timeslice,
)

SUITES = {"overhead": overhead.run, "pause": pause.run, "preemption": preemption.run,
          "control_plane": control_plane.run, "packing": packing.run, "fairness": fairness.run,
          "hook": hook.run, "scale": scale.run, "footprint": footprint.run, "timeslice": timeslice.run,
          "launch_stall": launch_stall.run, "store": store.run, "drain": drain.run,
          "elastic": elastic.run, "elastic_real": elastic_real.run,
          "report_poll": report_poll.run}
#: suites that start a Ray cluster of their own (in a subprocess): they need neither the bench's Ray nor its client
OWN_CLUSTER = {"drain", "elastic_real", "report_poll"}
#: suites that simulate and need neither Ray nor a client
PURE = {"fairness", "scale", "store", "elastic"}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--full", action="store_true", help="more repetitions and the 100,000-job registry")
    parser.add_argument("--only", nargs="*", choices=sorted(SUITES), help="run only these")
    parser.add_argument("--json", default=None, help="write the results here (default with --full: "
                        "benchmarks/results/<date>.json)")
    args = parser.parse_args()
    quick = not args.full
    ws = common.Workspace()
    client = None
    if not set(args.only or SUITES) <= PURE | OWN_CLUSTER:
        common.start_ray()
        import scheduler

        client = scheduler.connect(storage_root=ws.storage, db_path=ws.db)
    rows: list[common.Row] = []
    started = time.time()
    for name in args.only or list(SUITES):
        t0 = time.time()
        print(f"[bench] {name} ({'quick' if quick else 'full'}) ...", file=sys.stderr, flush=True)
        rows += SUITES[name](client, ws, quick)
        print(f"[bench] {name} done in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    print(f"\ntrainq benchmarks ({'quick' if quick else 'full'}), {time.strftime('%Y-%m-%d')}, {machine}, "
          f"{time.time() - started:.0f} s\n")
    print(common.table(rows))
    out = args.json or (f"benchmarks/results/{time.strftime('%Y-%m-%d')}.json" if args.full else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": machine, "quick": quick,
                                         "rows": [r.to_dict() for r in rows]}, indent=2))
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
