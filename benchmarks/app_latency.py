"""Cold start, first verdict and upload-to-verdict time of the running app, as one client sees them.

    python benchmarks/app_latency.py [--pair fashion-mnist-resnet18] [--n 40] [--rounds 3] [--cold-starts 3]
                                     [--compare DIR] [--out FILE]

Each checkout (this one, and with --compare a second checkout, e.g. `git worktree add /tmp/parent
HEAD~1`) is run as `python app.py` in its own process, alternately, so both see the same load:

- import gradio: `python -c "import gradio"` until it exits (what any Gradio app pays first), and a
  one-button Gradio app until its page is served (what any Gradio app pays to build and launch);
- cold start: `python app.py` until its page is served (HTTP 200 on /);
- first verdict: from the same start until a gradio_client client's first `/verify` (asked as soon
  as the page answers) has its verdict: what the first visitor after a wake waits for;
- verify: both servers running, warmed by one request, then `/verify` calls with the example
  images, alternating between them; timed from the request to the verdict (first update) and to
  everything the tab shows (last update), upload and download included, browser rendering not.
  `verify_edited` (the edit-and-watch view) is timed too, half as many calls. n calls in all, over
  --rounds pairs of fresh servers.

Prints JSON (and writes it to --out) with the command, date, machine and load average.
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
START_TIMEOUT_S = 300
# The floor for any Gradio app: one textbox and one button, launched.
TRIVIAL_APP = ("import gradio as gr\nwith gr.Blocks() as demo:\n    box = gr.Textbox()\n"
               "    gr.Button().click(lambda x: x, box, box)\ndemo.launch()\n")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summary(values: list[float], digits: int = 1) -> dict:
    s = sorted(values)
    pick = lambda q: round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], digits)  # noqa: E731
    return {"p50": pick(0.5), "p95": pick(0.95), "mean": round(statistics.fmean(s), digits), "n": len(s)}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _commit(checkout: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+uncommitted" if git("status", "--porcelain", "--untracked-files=no") else "")


def import_gradio_seconds() -> float:
    """`python -c "import gradio"` to its exit, in seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True, env={**os.environ})
    return time.perf_counter() - t0


class App:
    """`python app.py` of one checkout on a free loopback port; ``started`` is when it was spawned."""

    def __init__(self, checkout: Path, argv: tuple[str, ...] = ("app.py",)):
        self.checkout = checkout
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "GRADIO_SERVER_PORT": str(self.port), "GRADIO_SERVER_NAME": "127.0.0.1"}
        for key in ("AMINT_MODELS_DIR", "AMINT_EXAMPLES_DIR", "SPACE_ID"):  # each checkout's own pair and examples
            env.pop(key, None)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, *argv], cwd=checkout, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def wait_for_page(self) -> float:
        """Seconds from the spawn to the first HTTP 200 on /."""
        while time.perf_counter() - self.started < START_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.checkout}/app.py exited with {self.proc.returncode}")
            try:
                with _OPENER.open(self.url, timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"{self.checkout}/app.py did not serve its page within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def one_verify(client, pair: str, file: Path) -> tuple[float, float]:
    """ms to the verdict (first update) and to everything the tab shows (last update)."""
    from gradio_client import handle_file

    t0 = time.perf_counter()
    job = client.submit(pair, handle_file(str(file)), api_name="/verify")
    first, seen = None, 0
    while not job.done() or len(job.outputs()) > seen:
        if len(job.outputs()) > seen:
            seen = len(job.outputs())
            if first is None:
                first = 1000 * (time.perf_counter() - t0)
        time.sleep(0.002)
    job.result()
    last = 1000 * (time.perf_counter() - t0)
    return (last if first is None else first), last


def one_edited(client, pair: str, file: Path, edit: str) -> float:
    from gradio_client import handle_file

    t0 = time.perf_counter()
    client.predict(pair, handle_file(str(file)), edit, None, api_name="/verify_edited")
    return 1000 * (time.perf_counter() - t0)


def cold_start(checkout: Path, pair: str, file: Path) -> tuple[float, float]:
    """(seconds to the served page, seconds to the first verdict), from the spawn of `python app.py`."""
    from gradio_client import Client

    app = App(checkout)
    try:
        page = app.wait_for_page()
        client = Client(app.url, verbose=False)
        submitted = time.perf_counter() - app.started
        first_ms, _ = one_verify(client, pair, file)
        return page, submitted + first_ms / 1000
    finally:
        app.stop()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="fashion-mnist-resnet18", help="a pair name the app lists")
    ap.add_argument("--n", type=int, default=40, help="verify requests timed per checkout (after one warm-up)")
    ap.add_argument("--cold-starts", type=int, default=3, help="`python app.py` starts timed per checkout (0 = skip)")
    ap.add_argument("--rounds", type=int, default=3, help="fresh servers for the verify timing, n split among them")
    ap.add_argument("--compare", type=Path, help="a second checkout (e.g. the parent commit's worktree), run alike")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    from gradio_client import Client

    checkouts = {"this": ROOT}
    if args.compare:
        checkouts["compare"] = args.compare.resolve()
    files = sorted((ROOT / "examples").glob("*.png"))
    load_start = os.getloadavg()  # other work on the machine skews every figure: recorded beside them
    t_start = time.time()

    # Starts, alternating the order each round so neither checkout always goes first.
    gradio_import: list[float] = []
    trivial: list[float] = []
    page = {k: [] for k in checkouts}
    first_verdict = {k: [] for k in checkouts}
    for i in range(args.cold_starts):
        gradio_import.append(import_gradio_seconds())
        floor = App(ROOT, ("-c", TRIVIAL_APP))
        try:
            trivial.append(floor.wait_for_page())
        finally:
            floor.stop()
        for label in (list(checkouts) if i % 2 == 0 else list(reversed(checkouts))):
            p, f = cold_start(checkouts[label], args.pair, files[i % len(files)])
            page[label].append(p)
            first_verdict[label].append(f)

    # Latency: in each round, fresh servers of all checkouts up and warmed, requests alternating between
    # them. Two servers of the same code differ by 10-15% at p50 on the shared box (one measured
    # with --compare pointing at this checkout): more rounds average that out.
    verdict = {k: [] for k in checkouts}
    everything = {k: [] for k in checkouts}
    edited = {k: [] for k in checkouts}
    for r in range(args.rounds):
        apps = {label: App(path) for label, path in checkouts.items()}
        try:
            clients = {}
            for label, app in apps.items():
                app.wait_for_page()
                clients[label] = Client(app.url, verbose=False)
                one_verify(clients[label], args.pair, files[0])  # waits for the model, loads and caches the pair
            n = args.n // args.rounds + (r < args.n % args.rounds)
            for i in range(n):
                for label in (list(checkouts) if i % 2 == 0 else list(reversed(checkouts))):
                    v, e = one_verify(clients[label], args.pair, files[i % len(files)])
                    verdict[label].append(v)
                    everything[label].append(e)
            has_edited = all("/verify_edited" in c.view_api(print_info=False, return_format="dict")["named_endpoints"]
                             for c in clients.values())
            for i in range(max(1, n // 2) if has_edited else 0):
                for label in (list(checkouts) if i % 2 == 0 else list(reversed(checkouts))):
                    edited[label].append(one_edited(clients[label], args.pair, files[i % len(files)],
                                                    ("jpeg", "crop", "enlarge")[i % 3]))
        finally:
            for app in apps.values():
                app.stop()

    results = {}
    for label, path in checkouts.items():
        results[label] = {
            "checkout": str(path), "commit": _commit(path),
            "cold_start_s": {"runs": [round(x, 2) for x in page[label]], "median": _median(page[label])},
            "first_verdict_s": {"runs": [round(x, 2) for x in first_verdict[label]],
                                "median": _median(first_verdict[label])},
            "verify": {"verdict_ms": _summary(verdict[label]), "everything_ms": _summary(everything[label])},
            "verify_edited_ms": _summary(edited[label]) if edited[label] else None,
        }
        if gradio_import and page[label]:
            results[label]["cold_start_minus_import_gradio_s"] = round(_median(page[label]) - _median(gradio_import), 2)
    result = {
        "command": " ".join(["python", "benchmarks/app_latency.py", *(argv if argv is not None else sys.argv[1:])]),
        "pair": args.pair, "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(t_start)),
        "seconds": round(time.time() - t_start), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "import_gradio_s": {"runs": [round(x, 2) for x in gradio_import], "median": _median(gradio_import)},
        "trivial_gradio_app_cold_start_s": {"runs": [round(x, 2) for x in trivial], "median": _median(trivial)},
        **results,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
