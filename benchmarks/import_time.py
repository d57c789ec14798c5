"""Code location import time against `import dagster, pandas` (the floor any code location pays).

Each import runs in a fresh interpreter, alternating, `--runs` times; medians are compared. The
first import of a day builds the trading calendar's cache (about 0.5 s), so one warm-up run of
each goes first and is not counted.

    python benchmarks/import_time.py [--runs 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "import dagster, pandas": "import dagster, pandas",
    "import stock_assets.definitions": "import stock_assets.definitions",
}


def timed(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    for code in CASES.values():
        timed(code)  # warm-up: disk cache, calendar cache
    samples = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, code in CASES.items():
            samples[name].append(timed(code))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    floor, ours = medians["import dagster, pandas"], medians["import stock_assets.definitions"]
    print("| import | median s | min s | max s |\n|---|---|---|---|")
    for name, values in samples.items():
        print(f"| `{name}` | {medians[name]:.2f} | {min(values):.2f} | {max(values):.2f} |")
    mark = "✓" if ours / floor <= 1.25 else "✗"
    print(f"\ncode location / floor = {ours / floor:.2f}x (target <= 1.25x) {mark}")


if __name__ == "__main__":
    main()
