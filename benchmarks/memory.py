"""Memory: peak RSS of the quickstart and of each eval-only task, and RSS across epochs.

Peak RSS is the `ru_maxrss` that `wait4` reports for the run's process: the largest single
process (the main one; DataLoader workers are forked copies and would only double-count shared
pages). The quickstart and eval runs are the ones overhead.py and eval_throughput.py make (shared
when run.py runs them together). "Flat across epochs": RSS after the last training epoch over RSS
after the first (the probe reads it at each epoch end, after that epoch's validation and plots),
counting anonymous memory only (heap, tensors: what a leak grows) where Linux reports it.

    python benchmarks/memory.py [--smoke]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Options, Row, standalone
from benchmarks.eval_throughput import TASKS, available, eval_run, sizes
from benchmarks.overhead import quickstart_overrides, quickstart_run


def growth_per_epoch(rss: list[float]) -> float:
    """Least-squares slope of RSS over epochs 2..N (MiB/epoch); epoch 1 warms allocators up."""
    points = list(enumerate(rss))[1:]
    if len(points) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def rows(opts: Options) -> list[Row]:
    run = quickstart_run(opts, "default", 0)
    total = run.probe["epoch_rss_mb"]
    anon = run.probe.get("epoch_anon_mb") or [None]
    rss, kind = (anon, "anonymous RSS") if None not in anon else (total, "RSS")
    out = [
        Row(
            "memory.quickstart.peak_rss",
            run.peak_rss_mb,
            "MiB",
            f"peak RSS of python train.py {' '.join(quickstart_overrides(opts))} (fit + test)",
        ),
        Row(
            "memory.quickstart.rss_last_over_first_epoch",
            rss[-1] / rss[0],
            "x",
            f"{kind} after training epoch {len(rss)} / after epoch 1 (nothing accumulates per "
            f"epoch{'; it leaves out mapped library files' if rss is anon else ''})",
            "<= 1.05",
            {
                "epoch_rss_mib": [round(x, 1) for x in total],
                "epoch_anon_rss_mib": [round(x, 1) for x in rss] if rss is anon else None,
                "growth_mib_per_epoch_after_epoch_1": round(growth_per_epoch(rss), 2),
            },
        ),
    ]
    _, big = sizes(opts)
    for task in TASKS:
        if not available(task):
            continue
        result = eval_run(opts, task, big)
        out.append(
            Row(
                f"memory.eval.{task}.peak_rss",
                result.peak_rss_mb,
                "MiB",
                f"peak RSS of {task} stage=predict on its tiny model, dataset.batch_size={big}",
                details={"bs1_peak_rss_mib": round(eval_run(opts, task, 1).peak_rss_mb, 1)},
            )
        )
    return out


def main() -> None:
    standalone(rows, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
