"""Upload-to-verdict time through the running app, with every map and plot the Verify tab shows.

    python benchmarks/app_latency.py [--pair fashion-mnist-resnet18] [--n 30]

Launches the app in-process on 127.0.0.1, then calls its `verify` API (the same handler the button
runs: preprocessing, verdict, score plot, top classes, activation maps, saliency) n times with the
example images, and prints JSON: median / p90 / mean milliseconds per request, as a client sees them
(upload, handler, download). Browser rendering is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="fashion-mnist-resnet18")
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    from gradio_client import Client, handle_file

    import torch
    from amint.ui import build_app

    files = sorted((ROOT / "examples").glob("*.png"))
    demo = build_app()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        client.predict(args.pair, handle_file(str(files[0])), api_name="/verify")  # loads and caches the pair
        times = []
        for i in range(args.n):
            t0 = time.perf_counter()
            client.predict(args.pair, handle_file(str(files[i % len(files)])), api_name="/verify")
            times.append(1000 * (time.perf_counter() - t0))
    finally:
        demo.close()
    times.sort()
    print(json.dumps({"pair": args.pair, "n": args.n, "torch_threads": torch.get_num_threads(),
                      "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
                      "upload_to_verdict_ms": {"median": round(statistics.median(times), 1),
                                               "p90": round(times[int(0.9 * (len(times) - 1))], 1),
                                               "mean": round(statistics.fmean(times), 1)}}, indent=1))


if __name__ == "__main__":
    main()
