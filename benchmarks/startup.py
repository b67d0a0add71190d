"""Start-up: seconds from `python train.py experiment=quickstart` to its first training step.

Read by the probe callback at the first `on_train_batch_start` of the quickstart runs that the
overhead benchmark makes anyway (median over them). Phases in between come from the probe's
marks. `startup.import_floor` times a bare interpreter importing the third-party packages
`train.py` needs (the part of start-up no change to this repo can remove); the full mode adds a
`python -X importtime` run and prints the packages whose imports cost most (self time, summed
per top-level package).

    python benchmarks/startup.py [--smoke]
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Failed, Options, Row, median, run_process, standalone, train_py
from benchmarks.overhead import quickstart_run

# Phases of the probe's marks, in order: (mark that ends it, what happened before it)
PHASES = [
    ("callbacks_built", "interpreter, imports, config checks, data, model"),
    ("fit_setup", "Lightning trainer, loggers"),
    ("sanity_check_start", "strategy setup, optimizer"),
    ("sanity_check_end", "sanity-check validation"),
    ("first_step", "train loader, first batch"),
]


# What train.py imports before its first step, whatever it does itself: Lightning (which imports
# torchmetrics, and with it torchvision, torch._dynamo, scipy.signal and matplotlib), the models'
# library, the datasets library and the config system.
FLOOR = "import lightning, transformers, datasets, hydra"
# ... imported as train.py imports them: with the garbage collector paused, then frozen (with it
# running, the same imports take 2-4 s longer here).
FLOOR_CODE = f"import gc; gc.disable(); {FLOOR}; gc.freeze()"


def import_floor(opts: Options, repeat: int) -> float:
    """Seconds for a fresh interpreter to import `FLOOR` and exit."""
    folder = Path(tempfile.mkdtemp(prefix=f"import_floor{repeat}_", dir=opts.workdir))
    result = run_process([sys.executable, "-c", FLOOR_CODE], folder / "output.log")
    if result.returncode != 0:
        raise Failed(f"python -c {FLOOR_CODE!r} exited {result.returncode}:\n{result.output_tail}")
    return result.wall_s


def import_costs(log_text: str, top: int = 10) -> list[tuple[str, float]]:
    """`-X importtime` lines summed per top-level package: [(package, self seconds), ...]."""
    totals: dict[str, float] = {}
    for line in log_text.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            package = m.group(2).split(".")[0]
            totals[package] = totals.get(package, 0.0) + int(m.group(1)) / 1e6
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return [*ranked, ("(all)", sum(totals.values()))]


def rows(opts: Options) -> list[Row]:
    runs = [quickstart_run(opts, "default", r) for r in range(opts.repeats)]
    first = [r.probe["marks"]["first_step"] for r in runs]
    phases, before = {}, 0.0
    for mark, what in PHASES:
        at = median([r.probe["marks"].get(mark, float("nan")) for r in runs])
        if at == at:  # a phase a config skips (no sanity check) has no mark
            phases[f"{what} (until {mark})"] = round(at - before, 2)
            before = at
    out = [
        Row(
            "startup.first_step",
            median(first),
            "s",
            "python train.py experiment=quickstart: process start to the first training step "
            f"(median of {len(first)})",
            "<= 5",
            {"runs_s": [round(x, 2) for x in first], "phases_s": phases},
        )
    ]
    opts.log("start-up phases (s): " + ", ".join(f"{k}: {v}" for k, v in phases.items()))
    floor = median([import_floor(opts, r) for r in range(opts.repeats)])
    out.append(
        Row(
            "startup.import_floor",
            floor,
            "s",
            f"python -c '{FLOOR}' (garbage collector paused, as train.py does): the "
            f"third-party imports train.py cannot start without (median of {opts.repeats}); "
            f"the rest of start-up, {median(first) - floor:.1f} s, is train.py's own",
        )
    )
    if not opts.smoke:  # one more run, under -X importtime (which slows imports a little)
        run = train_py(
            ["experiment=quickstart", "trainer.max_steps=1", "test_after_fit=false"],
            opts,
            "importtime",
            flags=("-X", "importtime"),
        )
        costs = import_costs(run.log.read_text(errors="replace"))
        total = costs[-1][1]
        out.append(
            Row(
                "startup.imports",
                total,
                "s",
                "of the start-up, time spent importing modules (-X importtime self times, summed)",
                details={"top_packages_s": {k: round(v, 2) for k, v in costs[:-1]}},
            )
        )
        opts.log(
            "imports before the first step (self s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in costs[:-1])
        )
    return out


def main() -> None:
    standalone(rows, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
