"""Scale benchmark (issue 12, item 5): baskets of 10, 100 and 500 synthetic tickers x 2,500 sessions.

For each basket size, in a fresh home (warehouse, MLflow, Optuna, Dagster instance) with the
`csv` source over `benchmarks/synthetic.py` data, every phase runs in its own subprocess, so its
peak RSS (`os.wait4`: the child and everything it waited for) and its imports are its own:

1. generate: the synthetic CSV directory (`--sessions` + 2 sessions ending 2013-03-01);
2. backfill: `price_history_job` (raw_prices + processed_features + their blocking checks) over the
   first `--sessions` sessions as one single run (range tags), against Dagster's floor: two trivial
   assets over the same partitions in one run (`benchmarks/backfill.py`'s `scenario_floor`), measured
   once per invocation since it does not depend on the basket;
3. daily 1: `daily_job` for the next session: no champion yet, so it bootstraps a baseline;
4. daily 2: `daily_job` for the session after: the steady state (a champion, predictions to score);
5. retrain: `retraining_job` as of that last session with the settings' default budget.

Warehouse statements (SELECT / INSERT / DELETE on the warehouse engine) are counted per phase, to
show that reads and writes stay one query per range. The wall time of a phase is its job run; the
subprocess's imports and definition building are reported apart ("process s").

    python benchmarks/scale.py [--sizes 10,100,500] [--sessions 2500] [--retrain-sizes 10,100] [--out DIR]
                               [--phases generate,backfill,daily1,daily2,retrain] [--no-floor]

Timings depend on what else runs on the machine: the load average at the start is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))  # reuse backfill.py's floor and instance helpers

import backfill  # noqa: E402
import synthetic  # noqa: E402

END = "2013-03-01"
PHASES = ("generate", "backfill", "daily 1", "daily 2", "retrain")
# Targets on this 2-core machine (issue 12): (tickers, phase) -> (limit, unit); daily_job's is the steady state.
TARGETS = {
    (500, "backfill"): (600.0, "s"),
    (500, "daily 2"): (15.0, "s"),
    (500, "peak"): (4096.0, "MB"),
    (100, "retrain"): (600.0, "s"),
}


# --- children: one phase each ---------------------------------------------------------------------------------


def _settings(home: Path, n_tickers: int, total_sessions: int):
    """The Settings a user with this basket would write: csv source, start at the data's first session."""
    from stock_assets.settings import Settings

    sessions = synthetic.synthetic_sessions(total_sessions, END)
    return Settings(
        tickers=tuple(synthetic.ticker_names(n_tickers)),
        source="csv",
        csv_path=home / "csv",
        start_date=sessions[0],
        home=home,
    )


def _definitions(settings):
    from stock_assets.defs import build_definitions

    return build_definitions(settings)


class StatementCounter:
    """Data statements sent to the warehouse, per verb and table (an executemany counts once; SQLite's
    own schema lookups, PRAGMAs and transaction control are left out)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        from stock_assets.resources.warehouse import get_warehouse

        self.counts: dict[str, int] = {}
        self.insert_rows = 0
        sa.event.listen(get_warehouse(url).engine, "before_cursor_execute", self._count)

    def _count(self, conn, cursor, statement, parameters, context, executemany) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        match = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", statement, re.IGNORECASE)
        table = match.group(1) if match else "?"
        if verb not in ("SELECT", "INSERT", "DELETE", "UPDATE") or table.startswith("sqlite_"):
            return
        key = f"{verb.lower()} {table.removeprefix('_stock_assets_')}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if verb == "INSERT":
            self.insert_rows += len(parameters) if executemany else 1

    def summary(self) -> str:
        parts = [f"{key} {n}" for key, n in sorted(self.counts.items())]
        return ", ".join(parts) + (f" ({self.insert_rows} rows inserted)" if self.insert_rows else "")


def _step_seconds(instance, run_id: str) -> str:
    """'raw_prices 9.3, raw_prices_quality 0.2, ...': where a run's time went (checks by their own name)."""
    stats = [s for s in instance.get_run_step_stats(run_id) if s.end_time and s.start_time]
    check = re.compile(r"^(\w+?)_(\1\w*)$")  # asset_check step keys are "<asset>_<check name>"
    names = [check.sub(r"\2", s.step_key) for s in stats]
    return ", ".join(f"{name} {s.end_time - s.start_time:.1f}" for name, s in zip(names, stats))


def child_generate(home: Path, n: int, total: int) -> dict:
    started = time.perf_counter()
    basket = synthetic.write_basket(home / "csv", n, total, END)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "note": synthetic.check_through_source(home / "csv", basket)}


def child_floor(home: Path, n: int, total: int, sessions: int) -> dict:
    """backfill.py's floor over this benchmark's partitions: it reads the code location's settings
    (start date) from the environment and its keys from `_keys`, so both are pointed here."""
    keys = [d.isoformat() for d in synthetic.synthetic_sessions(total, END)]
    os.environ["STOCK_ASSETS_HOME"] = str(home)
    os.environ["STOCK_ASSETS_START_DATE"] = keys[0]
    backfill._keys = lambda count: keys[:count]
    result = backfill.scenario_floor(home, sessions)
    return {"seconds": result["seconds"], "note": f"{result['partitions']} partitions, one run"}


def child_backfill(home: Path, n: int, total: int, sessions: int) -> dict:
    settings = _settings(home, n, total)
    defs = _definitions(settings)
    keys = [d.isoformat() for d in synthetic.synthetic_sessions(total, END)][:sessions]
    instance = backfill._instance(home)
    counter = StatementCounter(settings.warehouse_url)
    started = time.perf_counter()
    result = defs.resolve_job_def("price_history_job").execute_in_process(
        instance=instance,
        run_config=backfill.QUIET,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        raise_on_error=False,
    )
    seconds = time.perf_counter() - started
    steps = _step_seconds(instance, result.run_id)
    return {
        "seconds": seconds,
        "ok": result.success,
        "note": f"{len(keys)} partitions",
        "detail": f"steps: {steps}; warehouse: {counter.summary()}",
    }


def child_daily(home: Path, n: int, total: int, key_index: int) -> dict:
    settings = _settings(home, n, total)
    defs = _definitions(settings)
    day = synthetic.synthetic_sessions(total, END)[key_index].isoformat()
    instance = backfill._instance(home)
    counter = StatementCounter(settings.warehouse_url)
    started = time.perf_counter()
    result = defs.resolve_job_def("daily_job").execute_in_process(
        instance=instance, partition_key=day, run_config=backfill.QUIET, raise_on_error=False
    )
    seconds = time.perf_counter() - started
    model = next(
        (
            str(e.materialization.metadata["model"].value)
            for e in result.get_asset_materialization_events()
            if e.asset_key.to_user_string() == "daily_predictions"
        ),
        "no predictions",
    )
    bootstrapped = model.endswith(f"promoted for {day}")
    scored = next(
        (
            e.materialization.metadata["rows"].value
            for e in result.get_asset_materialization_events()
            if e.asset_key.to_user_string() == "performance_log"
        ),
        0,
    )
    note = f"{day}: {'bootstrapped ' if bootstrapped else ''}{model}; {scored} predictions scored"
    detail = f"steps: {_step_seconds(instance, result.run_id)}; warehouse: {counter.summary()}"
    return {"seconds": seconds, "ok": result.success, "note": note, "detail": detail}


def child_retrain(home: Path, n: int, total: int) -> dict:
    settings = _settings(home, n, total)
    # A rerun on a reused home would resume the finished study and skip the search: start it afresh.
    (home / "optuna.db").unlink(missing_ok=True)
    defs = _definitions(settings)
    day = synthetic.synthetic_sessions(total, END)[-1].isoformat()
    instance = backfill._instance(home)
    counter = StatementCounter(settings.warehouse_url)
    started = time.perf_counter()
    result = defs.resolve_job_def("retraining_job").execute_in_process(
        instance=instance, partition_key=day, run_config=backfill.QUIET, raise_on_error=False
    )
    seconds = time.perf_counter() - started
    meta = {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    gate = next((e for e in result.get_asset_check_evaluations() if e.check_name == "promotion_gate"), None)
    search, candidate = meta.get("best_params", {}), meta.get("candidate_model", {})
    training = settings.training
    note = (
        f"{training.n_trials} trials x {training.max_epochs} epochs, window {training.training_window}: "
        f"trials {search.get('n_trials')}, pruned {search.get('n_pruned')}; best "
        f"{search.get('best_params', {}).get('architecture', '-')}; "
        f"holdout MAE {candidate.get('holdout_mae', float('nan')):.5f} vs persistence "
        f"{candidate.get('persistence_mae', float('nan')):.5f}; gate: {gate.description if gate else '-'}"
    )
    detail = f"steps: {_step_seconds(instance, result.run_id)}; warehouse: {counter.summary()}"
    return {"seconds": seconds, "ok": result.success, "note": note, "detail": detail}


def run_child(args: argparse.Namespace) -> None:
    home, n, total = Path(args.home), args.tickers, args.sessions + 2
    phase = args.child
    if phase == "generate":
        out = child_generate(home, n, total)
    elif phase == "floor":
        out = child_floor(home, n, total, args.sessions)
    elif phase == "backfill":
        out = child_backfill(home, n, total, args.sessions)
    elif phase in ("daily 1", "daily 2"):
        out = child_daily(home, n, total, args.sessions + int(phase[-1]) - 1)
    else:
        out = child_retrain(home, n, total)
    out["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out, default=str))


# --- parent: one subprocess per phase, the table -----------------------------------------------------------------


def run_phase(phase: str, home: Path, n: int, sessions: int, log: Path) -> dict:
    """Run one phase in a subprocess; its peak RSS from wait4 (the child and its reaped descendants)."""
    cmd = [sys.executable, __file__, "--child", phase, "--home", str(home), "--tickers", str(n)]
    cmd += ["--sessions", str(sessions)]
    out_file = home / f"{phase.replace(' ', '_')}.out"
    started = time.perf_counter()
    with open(out_file, "w") as stdout, open(log, "a") as stderr:
        stderr.write(f"\n=== {n} tickers: {phase} ===\n")
        stderr.flush()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4; keeps Popen from waiting again
    lines = [line for line in out_file.read_text().splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if code == 0 and lines else {"seconds": float("nan"), "ok": False}
    if code != 0 or not lines:
        result["note"] = f"FAILED (exit {code}): " + _last_error(log)
    result.setdefault("ok", True)
    result.update({"process_seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024})
    print(f"  {n} tickers, {phase}: {result['seconds']:.1f} s, {result['peak_rss_mb']:.0f} MB", flush=True)
    return result


def _last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line or "Killed" in line]
    return (errors or lines or ["(no output)"])[-1][:400]


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    return sum(p.stat().st_size for p in files) / 2**20


def _warehouse_mb(home: Path) -> float:
    return sum(_size_mb(p) for p in home.glob("warehouse.db*"))


def bench_size(n: int, args: argparse.Namespace, floor: dict | None, log: Path) -> tuple[list[tuple], list[str]]:
    home = Path(args.out) / f"tickers_{n}"
    if "generate" in args.phases:
        shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    phases = [p for p in PHASES if p in args.phases and (p != "retrain" or n in args.retrain_sizes)]
    results, sizes = {}, {}
    for phase in phases:
        if not all(r["ok"] for r in results.values()):
            results[phase] = {"skipped": f"after a failed {next(p for p, r in results.items() if not r['ok'])}"}
            continue
        results[phase] = run_phase(phase, home, n, args.sessions, log)
        if phase == "backfill":
            sizes["after backfill"] = _warehouse_mb(home)
    sizes["at the end"] = _warehouse_mb(home)
    if n not in args.retrain_sizes and "retrain" in args.phases:
        results["retrain"] = {"skipped": f"skipped (--retrain-sizes {','.join(map(str, args.retrain_sizes))})"}
    rows = []
    for phase, r in results.items():
        if "skipped" in r:
            rows.append((n, phase, None, None, None, "", "", r["skipped"]))
            continue
        limit = TARGETS.get((n, phase))
        verdict = "" if limit is None else ("✓" if r["ok"] and r["seconds"] <= limit[0] else "✗")
        if not r["ok"]:
            verdict = "✗"
        target = f"≤ {limit[0]:.0f} s" if limit else ""
        note = r.get("note", "")
        if phase == "backfill" and floor and r["ok"]:
            note = f"{r['seconds'] / floor['seconds']:.2f}x Dagster's floor ({floor['seconds']:.1f} s); " + note
        rows.append((n, phase, r["seconds"], r["process_seconds"], r["peak_rss_mb"], target, verdict, note))
    peak = max((r["peak_rss_mb"] for r in results.values() if "peak_rss_mb" in r), default=0.0)
    limit = TARGETS.get((n, "peak"))
    rows.append(
        (
            n,
            "peak RSS of any phase",
            None,
            None,
            peak,
            f"≤ {limit[0]:.0f} MB" if limit else "",
            ("✓" if peak <= limit[0] else "✗") if limit else "",
            "warehouse.db: " + ", ".join(f"{k} {v:.0f} MB" for k, v in sizes.items()),
        )
    )
    details = [f"- {n} tickers, {phase}: {r['detail']}" for phase, r in results.items() if r.get("detail")]
    return rows, details


def _fmt(value, spec: str) -> str:
    return "" if value is None or value != value else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,500", help="basket sizes, comma-separated")
    parser.add_argument("--sessions", type=int, default=2500, help="sessions backfilled (2 more for the daily runs)")
    parser.add_argument("--retrain-sizes", default="10,100", help="basket sizes that also run one retraining")
    parser.add_argument("--out", default="/tmp/stock_assets_scale", help="homes and data (rebuilt per size)")
    parser.add_argument("--no-floor", action="store_true", help="skip Dagster's floor (about 0.1 s per partition)")
    parser.add_argument(
        "--phases",
        default=",".join(p.replace(" ", "") for p in PHASES),
        help="phases to run; without generate, the previous run's home under --out is reused",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--tickers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    chosen = {p.strip() for p in args.phases.split(",")}
    args.phases = [p for p in PHASES if p.replace(" ", "") in chosen]
    args.retrain_sizes = [int(s) for s in args.retrain_sizes.split(",") if s.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "scale.log"
    log.write_text("")
    load = os.getloadavg()[0]
    started = time.perf_counter()
    floor = None
    if not args.no_floor and "backfill" in args.phases:
        floor_home = out / "floor"
        shutil.rmtree(floor_home, ignore_errors=True)
        floor_home.mkdir()
        floor = run_phase("floor", floor_home, 1, args.sessions, log)
    rows, details, per_size = [], [], {}
    for n in sizes:
        t0 = time.perf_counter()
        size_rows, size_details = bench_size(n, args, floor, log)
        rows, details = rows + size_rows, details + size_details
        per_size[n] = time.perf_counter() - t0
    print(
        f"\nScale benchmark ({os.cpu_count()} cores, load average {load:.1f} at the start; SQLite instance and "
        f"warehouse; synthetic csv source, {args.sessions} sessions ending {END} + 2 daily sessions)"
    )
    print("| tickers | phase | wall s | process s | peak RSS MB | target | | notes |")
    print("|---|---|---|---|---|---|---|---|")
    if floor:
        print(
            f"| - | Dagster floor: 2 trivial assets, one run | {floor['seconds']:.1f} | "
            f"{floor['process_seconds']:.1f} | {floor['peak_rss_mb']:.0f} | | | {floor.get('note', '')} |"
        )
    for n, phase, secs, proc, rss, target, verdict, note in rows:
        print(
            f"| {n} | {phase} | {_fmt(secs, '.1f')} | {_fmt(proc, '.1f')} | {_fmt(rss, '.0f')} | {target} | "
            f"{verdict} | {note} |"
        )
    print("\nWhere the time went (run step durations, s) and the warehouse statements of each phase:")
    print("\n".join(details))
    print("\n" + ", ".join(f"{n} tickers took {s / 60:.1f} min" for n, s in per_size.items()), end="")
    print(f"; total {(time.perf_counter() - started) / 60:.1f} min (logs: {log})")


if __name__ == "__main__":
    main()
