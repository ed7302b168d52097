"""Peak memory of `gansample generate` against n: memory must stay flat in n.

Each run is its own process (peak RSS from getrusage of the finished child); sizes are
interleaved over rounds, and the table prints the medians and the difference.

    python benchmarks/bench_memory.py                      # -n 1000 vs -n 100000, png and npz
    python benchmarks/bench_memory.py --n 1000 1000000 --formats png
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of one `gansample` process, measured by a parent that runs nothing else."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "gansample", *args],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 100_000])
    ap.add_argument("--formats", nargs="+", default=["png", "npz"])
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gansample-mem-"))
    peaks: dict[tuple[str, int], list[float]] = {(f, n): [] for f in a.formats for n in a.n}
    try:
        for _ in range(a.rounds):
            for f in a.formats:
                for n in a.n:
                    out = work / f"{f}-{n}"
                    peaks[(f, n)].append(peak_rss_mb(["generate", "-n", str(n), "--format", f, "--outdir",
                                                      str(out), "-q", "--device", "cpu"]))
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"# peak RSS of `gansample generate` (MB; median of {a.rounds} round(s), each run its own process)\n")
    print("| format | " + " | ".join(f"-n {n}" for n in a.n) + f" | difference (-n {a.n[-1]} minus -n {a.n[0]}) |")
    print("|---|" + "---|" * (len(a.n) + 1))
    for f in a.formats:
        med = [statistics.median(peaks[(f, n)]) for n in a.n]
        print(f"| {f} | " + " | ".join(f"{m:.1f}" for m in med) + f" | {med[-1] - med[0]:+.1f} MB |")


if __name__ == "__main__":
    main()
