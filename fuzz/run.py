"""The long fuzz run: mutants of every kind through every public entry point, tallied.

    .venv/bin/python -m fuzz.run --mutants 1000 [--entries "predict --bundle" manifest ...] [--seed 0]
        [--count "predict --model=300" ...]

Prints, per entry point, the inputs tried and how each ended (answer, the project's one-line error, or a failure:
traceback, bad-error, hang, crash, memory), the slowest answer's time, and the commonest errors; writes
benchmarks/results/fuzz.json. Failing mutants are kept under WORKDIR/failures/ with their plans.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))


def main() -> None:
    from common import machine_info, print_header

    from .campaign import ENTRIES, Campaign
    from .runner import GOOD, Runner
    from .seeds import prepare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=1000, help="per entry point (batch: in folders of 25)")
    parser.add_argument("--entries", nargs="+", default=list(ENTRIES), choices=ENTRIES)
    parser.add_argument("--count", action="append", default=[], metavar="ENTRY=N",
                        help="another number of mutants for one entry point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds one mutant may take")
    parser.add_argument("--memory-mb", type=float, default=4096.0, help="the worker's resident memory bound")
    parser.add_argument("--workdir", type=Path, default=Path("out/fuzz"))
    parser.add_argument("--results", type=Path, default=HERE.parent / "benchmarks" / "results" / "fuzz.json")
    args = parser.parse_args()
    counts = {entry: args.mutants for entry in args.entries}
    for item in args.count:
        entry, _, number = item.rpartition("=")
        if entry not in ENTRIES or not number.isdigit():
            parser.error(f"--count {item}: expected ENTRY=N with ENTRY one of {', '.join(ENTRIES)}")
        counts[entry] = int(number)

    info = machine_info()
    print_header("fuzzing the public entry points", info)
    work = prepare(args.workdir / "seeds")
    runner = Runner(deadline=args.deadline, memory_mb=args.memory_mb)
    campaign = Campaign(work, runner, args.workdir / "run")
    report = {"benchmark": "fuzz", "machine": info, "mutants_per_entry": counts, "seed": args.seed,
              "deadline_seconds": args.deadline, "memory_mb": args.memory_mb, "entries": []}
    started = time.perf_counter()
    try:
        baseline = campaign.baseline()
        refused = {what: o for what, o in baseline.items() if (o["outcome"] == "answer") == what.endswith(".wav")}
        report["baseline"] = {"seeds_run": len(baseline), "unexpected": refused}
        print(f"the seeds themselves: {len(baseline) - len(refused)} of {len(baseline)} as expected"
              + "".join(f"\n  {what}: {o['outcome']} {str(o.get('detail'))[:300]}" for what, o in refused.items()),
              flush=True)
        for index, entry in enumerate(args.entries):
            tally = campaign.run(entry, counts[entry], args.seed + index)
            row = dict(tally.to_dict(), seconds=tally.seconds)
            report["entries"].append(row)
            bad = {k: v for k, v in tally.outcomes.items() if k not in GOOD}
            print(f"{entry}: {tally.tried} tried in {tally.seconds:.0f} s: {dict(tally.outcomes)}; slowest "
                  f"{tally.slowest:.2f} s ({tally.slowest_what}); failures {bad or 'none'}", flush=True)
            for failure in tally.failures[:5]:
                print(f"  {failure['outcome']}: {failure['what']}: {str(failure.get('detail', ''))[-400:]}",
                      flush=True)
    finally:
        runner.stop()
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["worker_restarts"] = runner.restarts
    report["worker_peak_mb"] = round(runner.peak_mb)
    lines = ["| entry point | inputs | answers | one-line errors | tracebacks | hangs | crashes | memory | "
             "slowest s |", "|---|---|---|---|---|---|---|---|---|"]
    for row in report["entries"]:
        o = row["outcomes"]
        lines.append(f"| {row['entry']} | {row['tried']} | {o.get('answer', 0)} | {o.get('error', 0)} | "
                     f"{o.get('traceback', 0) + o.get('bad-error', 0)} | {o.get('hang', 0)} | {o.get('crash', 0)} | "
                     f"{o.get('memory', 0)} | {row['slowest_seconds']:.2f} |")
    report["table"] = "\n".join(lines)
    print(report["table"])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
