"""Run every benchmark in turn and print their figures (``make bench``).

Each script compares vnnews with the bare library in the same run and prints
its own table; this only runs them one after another (never in parallel: they
measure speed) and reports which ones failed. Run on an otherwise idle machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (script, arguments): the acceptance figures of the issues, cheapest first.
BENCHMARKS = [
    ("extract_quality.py", []),
    ("extract_newsim.py", []),
    ("segmentation.py", []),
    ("ner_eval.py", ["--split", "both"]),
    ("crawl_overhead.py", []),
    ("nlp.py", []),
    ("cluster_quality.py", ["--tuoitre"]),
    ("cluster_scale.py", []),
]


def main() -> int:
    failed = []
    for script, args in BENCHMARKS:
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(HERE / script), *args], check=False)
        print(
            f"=== {script}: exit {result.returncode} in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        if result.returncode:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
