"""Many users at once: throughput, waiting time, queue places and the server's memory under load.

    python benchmarks/app_load.py [--pair fashion-mnist-resnet18] [--sequential 1000] [--clients 50] [--requests 10]
    python benchmarks/app_load.py --sequential 20 --clients 10 --requests 5      # the short form the tests run

Starts ``python app.py`` as a separate process (so its memory is measured alone, from /proc), then:

1. sends ``--sequential`` /verify requests one after another from one client, recording the server's
   resident memory (RSS) after the first 50 (or all, if fewer) and at the end;
2. sends ``--requests`` /verify requests from each of ``--clients`` gradio_client clients at once,
   recording each request's wait, the best queue place each client was shown, and whether every
   verdict equals the one-client verdict for the same file;
3. prints JSON: requests/s, median / p90 seconds per request, RSS after 50 / after the sequential run /
   right after the concurrent run / after ``--settle`` idle seconds (what the server keeps), and what
   gradio's temporary folder and the uploads folder hold at the end.

The example images (examples/*.png) are the uploads. Figures on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20


VERIFY_DETAILS = 4  # /verify's outputs: model input, verdict, score chart, top classes, details, then the why

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux): what the operating system charges it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def folder_usage(folder: Path) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return {"files": len(files), "mb": round(sum(p.stat().st_size for p in files) / MB, 2)}


def start_server(env_extra: dict[str, str], port: int) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), **env_extra}
    return subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 180.0):
    from gradio_client import Client

    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited: {server.stderr.read()[-2000:]}")
        try:
            return Client(url, verbose=False, download_files=False)
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(1.0)
    raise TimeoutError(f"the app did not answer at {url} within {timeout:.0f} s")


def verify_once(client, pair: str, path: Path) -> tuple[bool, float, int | None]:
    """(is_member, seconds, best queue place shown) for one /verify request."""
    from gradio_client import handle_file

    t0 = time.perf_counter()
    job = client.submit(pair, handle_file(str(path)), api_name="/verify")
    best_rank = None
    while not job.done():
        rank = getattr(job.status(), "rank", None)
        if rank is not None:
            best_rank = rank if best_rank is None else max(best_rank, rank)
        time.sleep(0.05)
    details = job.result()[VERIFY_DETAILS]
    return bool(details["is_member"]), time.perf_counter() - t0, best_rank


def run_load(url: str, pid: int, pair: str, files: list[Path], sequential: int, clients: int,
             requests: int, settle_s: float = 15.0) -> dict:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)
    expected = {str(f): verify_once(client, pair, f)[0] for f in files}  # also loads the pair
    rss_start = rss_mb(pid)
    seq_times: list[float] = []
    rss_after_50 = None
    for i in range(sequential):
        seq_times.append(verify_once(client, pair, files[i % len(files)])[1])
        if i + 1 == min(50, sequential):
            rss_after_50 = rss_mb(pid)
        if (i + 1) % 100 == 0:  # progress on stderr: a long run that is cut short still tells something
            print(f"sequential {i + 1}/{sequential}: server RSS {rss_mb(pid):.0f} MB", file=sys.stderr, flush=True)
    rss_after_sequential = rss_mb(pid)

    results: list[tuple[int, str, bool, float, int | None]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one_client(k: int) -> None:
        c = Client(url, verbose=False, download_files=False)
        for j in range(requests):
            f = files[(k * requests + j) % len(files)]
            try:
                member, seconds, rank = verify_once(c, pair, f)
            except Exception as e:  # noqa: BLE001 - counted as a failed request
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                results.append((k, str(f), member, seconds, rank))

    threads = [threading.Thread(target=one_client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    rss_right_after = rss_mb(pid)
    print(f"concurrent done: server RSS {rss_right_after:.0f} MB", file=sys.stderr, flush=True)
    time.sleep(settle_s)  # idle: what the server keeps, not its peak (it trims its heap every 10 s)
    waits = sorted(r[3] for r in results)
    ranks = [r[4] for r in results if r[4] is not None]
    return {
        "rss_mb": {"start": round(rss_start), "after_first_50": round(rss_after_50 or rss_start),
                   "after_sequential": round(rss_after_sequential), "right_after_concurrent": round(rss_right_after),
                   "after_concurrent": round(rss_mb(pid)), "settle_s": settle_s},
        "sequential": {"n": sequential, "median_s": _r(statistics.median(seq_times)) if seq_times else None,
                       "requests_per_s": _r(len(seq_times) / sum(seq_times)) if seq_times else None},
        "concurrent": {"clients": clients, "requests_each": requests, "answered": len(results),
                       "failed": len(errors), "first_errors": errors[:3],
                       "verdicts_match_one_client": all(expected[f] == m for _, f, m, _, _ in results),
                       "requests_per_s": _r(len(results) / wall), "wall_s": _r(wall),
                       "median_s": _r(statistics.median(waits)) if waits else None,
                       "p90_s": _r(waits[int(0.9 * (len(waits) - 1))]) if waits else None,
                       "requests_shown_a_queue_place": len(ranks),
                       "largest_queue_place_shown": max(ranks) if ranks else None},
    }


def _r(x: float) -> float:
    return round(x, 3)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="fashion-mnist-resnet18")
    ap.add_argument("--sequential", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--models-dir", default=None, help="AMINT_MODELS_DIR for the app (default: models/)")
    ap.add_argument("--examples", default=str(ROOT / "examples"), help="folder of .png files to upload")
    ap.add_argument("--settle", type=float, default=15.0, help="idle seconds before the last memory reading")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    files = sorted(Path(args.examples).glob("*.png"))
    if not files:
        raise SystemExit(f"no .png files in {args.examples}")
    work = Path(tempfile.mkdtemp(prefix="amint-load-"))
    env = {"GRADIO_TEMP_DIR": str(work / "gradio"), "AMINT_UPLOADS_DIR": str(work / "uploads")}
    if args.models_dir:
        env["AMINT_MODELS_DIR"] = str(args.models_dir)
    port = free_port()
    server = start_server(env, port)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", server)
        report = run_load(f"http://127.0.0.1:{port}/", server.pid, args.pair, files, args.sequential, args.clients,
                          args.requests, args.settle)
        # Measured while the server runs: on shutdown gradio deletes its temporary files anyway.
        report["gradio_temp_dir_at_end"] = folder_usage(work / "gradio")
        report["uploads_dir_at_end"] = folder_usage(work / "uploads")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    report = {"pair": args.pair, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(),
              "load_average_at_end": [round(x, 2) for x in os.getloadavg()], **report}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
