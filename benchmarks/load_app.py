"""Load on the web demo: K concurrent clients pressing Generate with identical inputs.

Starts `python app.py` on a free port (or uses --url), runs K gradio_client clients for a
fixed time, each downloading every file of every response as a browser would, and prints
requests per second, p50/p95 latency, failed requests and the server's RSS before/after.

    python benchmarks/load_app.py --clients 20 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUEST = ("fashion-mnist", "", 0, 16, 1.0, "(from the seed)", "D score: best first", "")


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def start_app(extra: list[str] | None = None, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--device", "cpu",
                             *(extra or [])], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("app exited: " + (proc.stderr.read().decode() if proc.stderr else ""))
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("app did not start")


def run_load(url: str, clients: int, seconds: float, request: tuple = REQUEST) -> dict[str, Any]:
    """K clients, each in its own thread with its own gradio_client.Client, sending the
    same request back to back for ``seconds``; every returned file is downloaded."""
    from gradio_client import Client
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)
    stop_at = [0.0]

    def client(i: int) -> None:
        try:
            c = Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix=f"load{i}-"))
        except Exception as e:  # a client that cannot even connect counts as failed
            with lock:
                errors.append(f"connect: {e}")
            start.wait()
            return
        if start.wait() == 0:
            stop_at[0] = time.perf_counter() + seconds
        while not stop_at[0]:
            time.sleep(0.001)
        while time.perf_counter() < stop_at[0]:
            t = time.perf_counter()
            try:
                gallery, zip_path, _ = c.predict(*request, api_name="/generate")
                ok = len(gallery) == request[3] and Path(zip_path).stat().st_size > 0 and all(
                    Path(item["image"]).stat().st_size > 0 for item in gallery)
                if not ok:
                    raise RuntimeError("incomplete response")
                with lock:
                    latencies.append(time.perf_counter() - t)
            except Exception as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {str(e)[:200]}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 300)
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"requests": len(lat), "errors": errors, "wall_s": wall,
            "rps": len(lat) / seconds if lat else 0.0,
            "p50": statistics.median(lat) if lat else float("nan"),
            "p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--url", default=None, help="an app already running (RSS is then not reported)")
    a = ap.parse_args()
    proc = None
    tmp = tempfile.mkdtemp(prefix="gansample-load-")
    if a.url:
        url = a.url
    else:
        proc, url = start_app(env={"GRADIO_TEMP_DIR": tmp})
    try:
        before = rss_mb(proc.pid) if proc else (float("nan"), float("nan"))
        r = run_load(url, a.clients, a.seconds)
        after = rss_mb(proc.pid) if proc else (float("nan"), float("nan"))
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
    left = [p for p in Path(tmp).rglob("*") if p.is_file() and p.name.endswith(".gansample-tmp")]
    print(f"# web demo under load: {a.clients} clients, identical Generate requests (16 images), {a.seconds:.0f} s\n")
    print("| requests | req/s | p50 latency | p95 latency | failed | server RSS before -> after (peak) | temp files left |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {r['requests']} | {r['rps']:.1f} | {r['p50'] * 1000:.0f} ms | {r['p95'] * 1000:.0f} ms | "
          f"{len(r['errors'])} | {before[0]:.0f} -> {after[0]:.0f} MB ({after[1]:.0f} MB) | {len(left)} |")
    for e in r["errors"][:5]:
        print(f"  error: {e}")


if __name__ == "__main__":
    main()
