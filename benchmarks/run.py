"""Run every benchmark, print one table and write it as JSON (`make bench` runs this).

    python benchmarks/run.py                       # full: ~15-25 min on 2 quiet CPU cores
    python benchmarks/run.py --smoke               # every code path, ~1-2 min (the test suite)
    python benchmarks/run.py --only overhead,startup --repeats 5 --out /tmp/bench.json

Each concern is a module of this folder with `rows(opts) -> list[Row]` (see README.md there);
they share the `train.py` runs they read (start-up and memory read the overhead runs).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, Options, Row, machine

CONCERNS = ["overhead", "startup", "input_pipeline", "eval_throughput", "memory", "gpu_throughput"]


def prefetch(opts: Options, jobs: int) -> None:
    """Smoke mode: start the subprocess runs the rows will read `jobs` at a time (their numbers
    are meaningless then; only the full mode, one run at a time, measures)."""
    from benchmarks import eval_throughput, overhead
    from benchmarks.common import python_script

    with ThreadPoolExecutor(jobs) as pool:
        setups = pool.submit(eval_throughput.tiny_setups, opts)
        futures = [
            pool.submit(overhead.quickstart_run, opts),
            pool.submit(python_script, "overhead.py", overhead.plain_args(opts), opts, "plain"),
            pool.submit(python_script, "gpu_throughput.py", ["--smoke"], opts, "gpu"),
        ]
        setups.result()
        _, big = eval_throughput.sizes(opts)
        for task in eval_throughput.TASKS:
            if eval_throughput.available(task):
                for batch_size in (1, big):
                    futures.append(pool.submit(eval_throughput.eval_run, opts, task, batch_size))
        for future in futures:
            future.result()


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:#.3g}" if abs(value) >= 0.01 else f"{value:.2e}"


def table(rows: list[Row]) -> str:
    """A Markdown table (readable in a terminal, pasteable into the README)."""
    lines = ["| row | value | unit | goal | what it measures |", "|---|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {fmt(r.value)} | {r.unit} | {r.goal} | {r.measures} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every code path, tiny sizes, fast")
    parser.add_argument("--only", default=",".join(CONCERNS), help="comma list of concerns")
    parser.add_argument("--repeats", type=int, default=3, help="runs per median (full mode)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of each overhead run")
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: as set)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel runs in smoke mode")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args()
    concerns = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(concerns) - set(CONCERNS)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; known: {', '.join(CONCERNS)}")

    if args.epochs < 3:
        parser.error("--epochs: at least 3 (the timed window is epochs 1 to N-1)")
    if args.threads is not None:  # subprocesses inherit it; this process's torch reads it too
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    opts = Options(smoke=args.smoke, repeats=args.repeats, epochs=args.epochs)
    started = time.time()
    info = machine()
    opts.log(f"run folders in {opts.workdir}; machine: {info}")
    rows: list[Row] = []
    failed = []
    try:
        if args.smoke and args.jobs > 1 and set(concerns) == set(CONCERNS):
            prefetch(opts, args.jobs)
        for concern in concerns:
            try:
                rows += importlib.import_module(f"benchmarks.{concern}").rows(opts)
            except Exception as e:  # one broken benchmark must not hide the others
                traceback.print_exc()
                failed.append(concern)
                rows.append(Row(f"{concern}.error", None, "", f"failed: {type(e).__name__}: {e}"))
    finally:
        if not args.keep:
            shutil.rmtree(opts.workdir, ignore_errors=True)

    result = {
        "smoke": args.smoke,
        "note": (
            "smoke mode: code paths only, runs overlapped; not measurements"
            if args.smoke
            else f"medians of {opts.repeats} where repeated; one run at a time"
        ),
        "machine": info,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "duration_s": round(time.time() - started, 1),
        "load_avg_1m_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "rows": [r.to_dict() for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    cpu = f"{info.get('cpu') or 'CPU'} x{info.get('cpu_count')}"
    print(
        f"\n{'SMOKE (code paths only, not measurements): ' if args.smoke else ''}"
        f"{cpu}, torch {info.get('torch')}, GPU: {info.get('cuda') or 'none'}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"load avg {info.get('load_avg_1m') or 0:.1f} -> {result['load_avg_1m_after'] or 0:.1f}, "
        f"{result['duration_s']} s\n"
    )
    print(table(rows))
    print(f"\nwritten: {args.out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
