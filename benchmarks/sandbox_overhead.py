"""What the sandbox adds to a build: the README's example build, timed against another
edgec source tree (the code before the sandbox), runs alternating so that a busy machine
slows both alike.

    PYTHONPATH=src python benchmarks/sandbox_overhead.py --baseline /path/to/old/src --runs 7

Each run is a fresh ``python -m edgec build --target cortex-m --out DIR`` process, one
TensorFlow thread pool each (TF_NUM_*_THREADS=1, as in the tests); the medians and every
run's wall time are printed. The growth is an estimate on a shared machine: compare the
medians, not single runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"


def run(src: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1"}  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "edgec", "build", "--target", "cortex-m", "--out", str(out)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the build with {src} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="another edgec src/")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"baseline": [], "this tree": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            order = [("baseline", args.baseline), ("this tree", HERE)]
            for name, src in order if i % 2 == 0 else reversed(order):
                seconds = run(src, Path(tmp) / f"{name.replace(' ', '_')}_{i}")
                times[name].append(seconds)
                print(f"run {i + 1}: {name:9} {seconds:6.1f} s", flush=True)
    before, after = (statistics.median(times[k]) for k in ("baseline", "this tree"))
    print(f"median: baseline {before:.1f} s, this tree {after:.1f} s "
          f"({(after / before - 1) * 100:+.1f}%)")  # fmt: skip


if __name__ == "__main__":
    main()
