"""Where a /verify request's time goes: before the handler, the handler to its verdict, the verdict to the client.

    python benchmarks/verify_breakdown.py [--n 50] [--extra-ms 0,15,30,60] [--out FILE]

Serves the app in this process on the default pair and calls `/verify` with gradio_client (the example
images in turn), timing three stretches of each request: request -> the handler starts, the handler ->
its first update (the verdict), the first update -> the client has it. With ``--extra-ms`` the handler
is made that much slower before its first update (a sleep): if the request's total does not move, the
verdict's arrival is set by Gradio's event machinery, not by the handler. Run it on two checkouts
(``cd other && python /path/to/verify_breakdown.py``) to compare their handlers. Prints JSON.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
CHECKOUT = Path.cwd()  # the checkout to measure (its amint, models/ and examples/)
sys.path.insert(0, str(CHECKOUT))


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="requests per setting (the first 5 warm up, not counted)")
    ap.add_argument("--extra-ms", default="0", help="comma-separated delays added before the handler's first update")
    ap.add_argument("--pair", default="fashion-mnist-resnet18")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from amint.ui import verify as ui_verify

    marks: list[tuple[float, float]] = []
    extra = {"s": 0.0}
    handler = ui_verify.verify

    def timed(*a, **k):
        start, first = time.perf_counter(), True
        for out in handler(*a, **k):
            if first:
                time.sleep(extra["s"])
                marks.append((start, time.perf_counter()))
                first = False
            yield out

    timed.__signature__ = inspect.signature(handler)  # Gradio reads the progress parameter from it
    ui_verify.verify = timed

    from gradio_client import Client, handle_file

    from amint.ui import build_app

    demo = build_app()
    demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    files = sorted((CHECKOUT / "examples").glob("*.png"))
    rows = []
    try:
        client = Client(demo.local_url, verbose=False)
        for ms in (float(x) for x in args.extra_ms.split(",")):
            extra["s"] = ms / 1000
            before, inside, after = [], [], []
            for i in range(args.n):
                t0 = time.perf_counter()
                job = client.submit(args.pair, handle_file(str(files[i % len(files)])), api_name="/verify")
                while not job.outputs():
                    time.sleep(0.001)
                t1 = time.perf_counter()
                job.result()
                start, first = marks[-1]
                if i >= 5:
                    before.append(1000 * (start - t0))
                    inside.append(1000 * (first - start))
                    after.append(1000 * (t1 - first))
            rows.append({"extra_ms": ms, "to_handler_ms": _median(before), "handler_to_verdict_ms": _median(inside),
                         "verdict_to_client_ms": _median(after),
                         "request_to_verdict_ms": _median([a + b + c for a, b, c in zip(before, inside, after)]),
                         "n": len(inside)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        demo.close()
    result = {"command": "python benchmarks/verify_breakdown.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "checkout": str(CHECKOUT), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "load_average": os.getloadavg(), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
