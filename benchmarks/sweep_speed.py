"""Speed of the default benchmark sweep (target: the whole default MSR-VTT sweep, >= 200 configurations, < 30 s on
2 cores). Prints wall and CPU time of loading and of the sweep; run with ``taskset -c 0,1`` to pin two cores.

    .venv/bin/python benchmarks/sweep_speed.py [DATASET_DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", default=os.environ.get(
        "MMFUSE_MSRVTT", str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "msrvtt-1ka")))
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()

    from mmfuse.benchmarks.datasets import load_dataset
    from mmfuse.benchmarks.sweep import build_configs, sweep

    t0, c0 = time.perf_counter(), _cpu()
    ds = load_dataset(args.dataset)
    t1, c1 = time.perf_counter(), _cpu()
    cfgs = build_configs(ds.retrievers)
    res = sweep(ds, cfgs, workers=args.workers)
    t2, c2 = time.perf_counter(), _cpu()
    print(f"cores available: {len(os.sched_getaffinity(0))}, load average: {os.getloadavg()[0]:.1f}")
    print(f"load dataset: {t1 - t0:.2f} s wall, {c1 - c0:.2f} s CPU")
    print(f"sweep: {len(res)} configurations in {t2 - t1:.2f} s wall, {c2 - c1:.2f} s CPU "
          f"({len(res) / (t2 - t1):.1f} configurations/s)")
    print(f"total: {t2 - t0:.2f} s wall (target < 30 s on 2 cores)")


if __name__ == "__main__":
    main()
