"""``python -m bench [ID ...] [--runs N] [--engine sqlite|postgres|both] [--smoke]``: run the
benchmarks and write bench/RESULTS.md.

Each benchmark runs the real bridge as a process (``python -m bot run``) against the emulators
on 127.0.0.1, bounded in time and count, once per store engine (``bench/engines.py``). Figures
are the median over runs; the per-run values are listed too. ``--smoke`` runs tiny sizes once
and writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import importlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import SMOKE_VARIABLE, Measurement
from bench.engines import DATABASE_URL_VARIABLE, ENGINES, default_engines, use_engine

BENCHMARKS = (
    "click",
    "click-storm",
    "post",
    "ingest",
    "ingest-stream",
    "burst",
    "ladders",
    "restart",
    "failover",
    "decision-e2e",
    "ladder_core",
    "peer",
    "memory",
)


@dataclass(frozen=True)
class Target:
    """A figure's target: ``op`` is ``<=`` or ``>=``."""

    figure: str
    op: str
    value: float

    def met(self, measured: float) -> bool:
        if math.isnan(measured):
            return False
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def miss(self, measured: float) -> str:
        """How far ``measured`` is from the target, e.g. ``+23 %`` (empty when met)."""
        if self.met(measured) or math.isnan(measured):
            return ""
        if self.value == 0:
            return f"{fmt(measured)} over"
        return f"{(measured - self.value) / abs(self.value) * 100:+.0f} %"


#: Issue 19's table (2 cores, medians of 3 runs).
TARGETS: dict[str, list[Target]] = {
    "click": [Target("p99 ms", "<=", 10), Target("refused (10062)", "<=", 0)],
    "click-storm": [Target("p99 ms", "<=", 50), Target("refused (10062)", "<=", 0)],
    "post": [Target("p50 ms", "<=", 10), Target("p99 ms", "<=", 25)],
    "ingest": [Target("× peer (64 senders)", ">=", 1.0)],
    "ingest-stream": [
        Target("events stored/s", ">=", 20_000),
        Target("× peer", ">=", 1.0),
        Target("events not stored in time", "<=", 0),
    ],
    "burst": [
        Target("messages per kind (max)", "<=", 1),
        Target("429 answers", "<=", 0),
        Target("last task visible after s", "<=", 32),  # group wait 30 s + 2 s
    ],
    "ladders": [
        Target("lateness p99 s", "<=", 1.0),
        Target("peak RSS MB", "<=", 500),
        Target("critical task posted p99 s", "<=", 1.0),
        Target("edits per channel, busiest minute", "<=", 60),  # Discord: ≈ 5 per 5 s
    ],
    "restart": [
        Target("timers armed after s", "<=", 10),
        Target("steps taken twice", "<=", 0),
        Target("steps not taken when the wait ended", "<=", 0),
    ],
    "failover": [
        Target("takeover s", "<=", 15),
        Target("steps taken twice", "<=", 0),
        Target("steps not taken when the wait ended", "<=", 0),
        Target("events lost", "<=", 0),
    ],
    "decision-e2e": [Target("p99 ms", "<=", 100)],
    "ladder_core": [],
    "peer": [],
    "memory": [Target("growth KB per task", "<=", 0.5)],
}

#: (benchmark, figure) → (benchmark, figure) of the peer's figure for the same work, for the
#: "× peer" column (measured ÷ peer). A peer figure of the same benchmark comes from the same run.
PEERS: dict[tuple[str, str], tuple[str, str]] = {
    ("ingest", "events/s (4 senders)"): ("ingest", "peer alerts/s (4 senders)"),
    ("ingest", "events/s (64 senders)"): ("ingest", "peer alerts/s (64 senders)"),
    ("ingest-stream", "events stored/s"): ("ingest-stream", "peer alerts/s (batches of 64)"),
    ("burst", "last task visible after s"): ("peer", "time to last notification s"),
    ("burst", "channel messages"): ("peer", "notifications"),
    ("burst", "messages per kind (max)"): ("peer", "notifications"),
    ("burst", "peak RSS MB"): ("peer", "peak RSS MB"),
    ("burst", "CPU s per 1,000 events"): ("peer", "CPU s per 1,000 events"),
}

BOUNDS_START = "<!-- bounds:{id} -->"
BOUNDS_END = "<!-- /bounds:{id} -->"
BOUNDS_PLACEHOLDER = (
    "_To fill in from a profile (py-spy or pyinstrument output summarised): what bounds this "
    "figure now, and what would move it._"
)


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return f"{platform.machine()}, {cpus} cores{mem}, Python {platform.python_version()}, {platform.system()}"


def fmt(value: float) -> str:
    if math.isnan(value):
        return "—"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def module_name(bench_id: str) -> str:
    """The module of a benchmark id (``click-storm`` → ``bench.click_storm``)."""
    return f"bench.{bench_id.replace('-', '_')}"


def kept_bounds(previous: str) -> dict[str, str]:
    """The "what bounds each figure" text per benchmark id in an earlier RESULTS.md."""
    kept: dict[str, str] = {}
    for bench_id in BENCHMARKS:
        start, end = BOUNDS_START.format(id=bench_id), BOUNDS_END.format(id=bench_id)
        if start in previous and end in previous:
            text = previous.split(start, 1)[1].split(end, 1)[0].strip()
            if text:
                kept[bench_id] = text
    return kept


def render(results: list[Measurement], previous: str = "") -> str:
    """RESULTS.md: one row per benchmark, engine and figure; the "× peer" column where a peer
    figure exists; a section per benchmark for what bounds its figures, kept from
    ``previous`` (the earlier RESULTS.md) so that the lead's analysis survives a re-run."""
    medians = {(m.id, m.engine, name): m.median(name) for m in results for name in m.figures}

    def peer_of(m: Measurement, name: str) -> float:
        peer = PEERS.get((m.id, name))
        if peer is None:
            return math.nan
        for engine in (m.engine, "—", "sqlite", "postgres"):
            value = medians.get((peer[0], engine, peer[1]))
            if value is not None and value:
                return medians[(m.id, m.engine, name)] / value
        return math.nan

    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}. Date: {datetime.now(UTC).date().isoformat()}. "
        "Runs: as many as the per-run column lists (figures are the median of the per-run "
        "values; runs of one benchmark come from one invocation).",
        "Reproduce: `python -m bench` (all) or `python -m bench ID` (see bench/README.md). "
        "Engine: the bridge's store (— where none is involved). × peer: the median ÷ "
        "Alertmanager's median for the same work (the peer figure of `ingest` is from the same "
        "run; that of `burst` from the `peer` benchmark).",
        "",
        "| id | engine | figure | median | per run | × peer | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in results:
        targets = {t.figure: t for t in TARGETS.get(m.id, [])}
        for name, values in m.figures.items():
            median = m.median(name)
            target = targets.get(name)
            ratio = peer_of(m, name)
            met = "— | —"
            if target:
                verdict = "yes" if target.met(median) else f"NO {target.miss(median)}".strip()
                met = f"{target.op} {fmt(target.value)} | {verdict}"
            lines.append(
                f"| {m.id} | {m.engine} | {name} | {fmt(median)} | "
                f"{', '.join(fmt(v) for v in values)} | "
                f"{'—' if math.isnan(ratio) else fmt(ratio) + ' ×'} | {met} |"
            )
    notes: dict[str, list[str]] = {}
    for m in results:
        for note in m.notes:
            if note not in notes.setdefault(m.id, []):
                notes[m.id].append(note)
    if any(notes.values()):
        lines += ["", "## Notes", ""]
        lines += [
            f"- **{bench_id}**: {note}" for bench_id, texts in notes.items() for note in texts
        ]
    kept = kept_bounds(previous)
    lines += ["", "## What bounds each figure", ""]
    for bench_id in dict.fromkeys(m.id for m in results):
        lines += [
            f"### {bench_id}",
            "",
            BOUNDS_START.format(id=bench_id),
            kept.get(bench_id, BOUNDS_PLACEHOLDER),
            BOUNDS_END.format(id=bench_id),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


async def run(
    ids: list[str], runs: int | None, engines: list[str], *, smoke: bool = False
) -> list[Measurement]:
    results = []
    for bench_id in ids:
        module = importlib.import_module(module_name(bench_id))
        with_store = getattr(module, "STORE", True)
        # a benchmark may run on some engines only (``ENGINES``: failover needs PostgreSQL)
        supported = getattr(module, "ENGINES", ENGINES)
        for engine in engines if with_store else ["—"]:
            if with_store and engine not in supported:
                print(f"[{bench_id} {engine}] skipped: runs on {', '.join(supported)} only")
                continue
            if with_store:
                use_engine(engine)
            measurement = Measurement(bench_id, engine=engine)
            # ``--runs`` when given, else the module's own count (``RUNS``), else 3
            count: int = 1 if smoke else runs or int(getattr(module, "RUNS", 3))
            for run_index in range(count):
                started = time.monotonic()
                print(f"[{bench_id} {engine}] run {run_index + 1}/{count} …", flush=True)
                await module.run_once(measurement)
                print(
                    f"[{bench_id} {engine}]   done in {time.monotonic() - started:.1f}s: "
                    + ", ".join(f"{k}={fmt(v[-1])}" for k, v in measurement.figures.items()),
                    flush=True,
                )
            measurement.notes.extend(getattr(module, "NOTES", []))
            results.append(measurement)
    return results


def engines_of(bench_id: str, entry: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Engine → figures of one RESULTS.json entry; an entry written before engines were
    reported counts as SQLite (— for a benchmark without a store)."""
    if "engines" in entry:
        return dict(entry["engines"])
    if "figures" not in entry:
        return {}
    return {("—" if bench_id in ("ladder_core", "peer") else "sqlite"): entry["figures"]}


def saved_measurements(saved: dict[str, Any]) -> list[Measurement]:
    """The measurements kept in RESULTS.json, in :data:`BENCHMARKS` order (an entry written
    before engines were reported counts as SQLite, or — for a benchmark without a store)."""
    out = []
    for bench_id in BENCHMARKS:
        entry = saved.get(bench_id)
        if entry is None:
            continue
        for engine, figures in engines_of(bench_id, entry).items():
            out.append(Measurement(bench_id, figures, list(entry.get("notes", [])), engine=engine))
    return out


def compile_bridge() -> None:
    """Write the bytecode of the bridge's packages before any run, as installing the wheel
    does: a bridge started from a checkout under ``PYTHONDONTWRITEBYTECODE`` would otherwise
    compile every module again at each start (≈ 0.7 s of a ``restart`` figure)."""
    root = Path(__file__).resolve().parent.parent
    for package in ("bot", "escalation", "batching", "sandbox"):
        compileall.compile_dir(root / package, quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "ids", nargs="*", help=f"benchmarks to run (all by default): {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs per benchmark (default: 3, or the module's RUNS)",
    )
    parser.add_argument(
        "--engine",
        choices=("sqlite", "postgres", "both"),
        default=None,
        help="the bridge's store: default both when BENCH_DATABASE_URL is set, else sqlite",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes (a few seconds per benchmark) to check that the code works; "
        "prints the figures and writes no RESULTS file",
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument(
        "--render-only", action="store_true", help="re-render RESULTS.md from RESULTS.json"
    )
    args = parser.parse_args()
    ids = args.ids or list(BENCHMARKS)
    unknown = [i for i in ids if i not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    if args.engine is None:
        engines = default_engines()
    else:
        engines = list(ENGINES) if args.engine == "both" else [args.engine]
    if "postgres" in engines and not os.environ.get(DATABASE_URL_VARIABLE):
        parser.error(f"--engine {args.engine} needs {DATABASE_URL_VARIABLE}")
    if args.smoke:
        os.environ[SMOKE_VARIABLE] = "1"  # read by the modules when they are imported
        results = asyncio.run(run(ids, 1, engines, smoke=True))
        print(render(results))
        return 0
    if not args.render_only:
        compile_bridge()
    fresh = [] if args.render_only else asyncio.run(run(ids, args.runs, engines))
    # keep the other benchmarks' (and engines') last figures: a partial run updates only its rows
    store = args.output.with_suffix(".json")
    saved = json.loads(store.read_text()) if store.exists() else {}
    for m in fresh:
        engines_saved = engines_of(m.id, saved.get(m.id, {}))
        engines_saved[m.engine] = m.figures
        saved[m.id] = {
            "engines": engines_saved,
            "notes": m.notes,
            "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    store.write_text(json.dumps(saved, indent=2) + "\n")
    previous = args.output.read_text() if args.output.exists() else ""
    text = render(saved_measurements(saved), previous)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
