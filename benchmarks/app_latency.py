"""Cold start and upload-to-verdict time of the running app, as one client sees them.

    python benchmarks/app_latency.py [--pair fashion-mnist-resnet18] [--n 40] [--cold-starts 3] [--out FILE]

Cold start: `python app.py` in a fresh process until its page is served (HTTP 200 on /), median of
--cold-starts runs. Then the app is launched in-process on 127.0.0.1 and its `verify` API (what the
Verify tab's button runs) is called n times with the example images: the verdict arrives as a first
update, the activation maps, trace evidence and edit saliency as a second; both are timed from the
request (upload, handler, download). `verify_edited` (the edit-and-watch view) is timed too.
Browser rendering is not included. Prints JSON (and writes it to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_start_seconds(timeout: float = 120) -> float:
    """`python app.py` to the first served page, in seconds."""
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"the app did not serve its page within {timeout} s")
    finally:
        proc.terminate()
        proc.wait(10)


def _summary(ms: list[float]) -> dict:
    s = sorted(ms)
    pick = lambda q: round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], 1)  # noqa: E731
    return {"p50": pick(0.5), "p95": pick(0.95), "mean": round(statistics.fmean(s), 1), "n": len(s)}


def time_verify(client, pair: str, files: list[Path], n: int) -> dict:
    """Per request: ms to the verdict (first update) and to everything the tab shows (last update)."""
    from gradio_client import handle_file

    first, last = [], []
    for i in range(n):
        t0 = time.perf_counter()
        job = client.submit(pair, handle_file(str(files[i % len(files)])), api_name="/verify")
        seen = 0
        while not job.done() or len(job.outputs()) > seen:
            if len(job.outputs()) > seen:
                seen = len(job.outputs())
                if seen == 1:
                    first.append(1000 * (time.perf_counter() - t0))
            time.sleep(0.002)
        job.result()
        last.append(1000 * (time.perf_counter() - t0))
    return {"verdict_ms": _summary(first), "everything_ms": _summary(last)}


def time_edited(client, pair: str, files: list[Path], n: int) -> dict:
    from gradio_client import handle_file

    times = []
    for i in range(n):
        t0 = time.perf_counter()
        client.predict(pair, handle_file(str(files[i % len(files)])), ("jpeg", "crop", "enlarge")[i % 3], None,
                       api_name="/verify_edited")
        times.append(1000 * (time.perf_counter() - t0))
    return _summary(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="fashion-mnist-resnet18", help="a pair name the app lists")
    ap.add_argument("--n", type=int, default=40, help="verify requests timed (after one warm-up)")
    ap.add_argument("--cold-starts", type=int, default=3, help="`python app.py` starts timed (0 = skip)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    from gradio_client import Client, handle_file

    import torch
    from amint.ui import build_app

    load = os.getloadavg()[0]  # other work on the machine skews every figure: recorded beside them
    cold = [cold_start_seconds() for _ in range(args.cold_starts)]
    files = sorted((ROOT / "examples").glob("*.png"))
    demo = build_app()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        client.predict(args.pair, handle_file(str(files[0])), api_name="/verify")  # loads and caches the pair
        verify = time_verify(client, args.pair, files, args.n)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        # An older app (the "before" figures) has no verify_edited: time what it has.
        edited = time_edited(client, args.pair, files, max(3, args.n // 2)) if "/verify_edited" in endpoints else None
    finally:
        demo.close()
    result = {"pair": args.pair, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "load_average_1min_at_start": round(load, 2),
              "cold_start_s": {"runs": [round(c, 2) for c in cold],
                               "median": round(statistics.median(cold), 2) if cold else None},
              "verify": verify, "verify_edited_ms": edited}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
