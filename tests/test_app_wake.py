"""A Space that wakes fast: `python app.py` serves its page before torch has loaded, and a verdict asked
for meanwhile waits for the model (saying "Loading the model…") and arrives.

The app is started as a separate process, as a Space starts it, with the shipped default pair and
examples. It reports its wake in AMINT_WAKE_LOG (amint/ui/wake.py): a "serving" line written when
its page first answered, saying whether torch was imported by then, and a "ready" line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 240  # a cold `import gradio` takes 5-10 s on a busy 2-core box, torch as much again
LOADING = "Loading the model…"  # amint.ui.wake.LOADING (not imported: that would import gradio's UI here)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _events(log: Path) -> dict[str, dict]:
    if not log.is_file():
        return {}
    return {r["event"]: r for r in map(json.loads, log.read_text().splitlines())}


@pytest.fixture()
def started_app(tmp_path):
    """`python app.py` in a fresh process: yields (url, wake log, time its page first answered us)."""
    port, log = _free_port(), tmp_path / "wake.jsonl"
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "AMINT_WAKE_LOG": str(log), "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    for key in ("AMINT_MODELS_DIR", "AMINT_EXAMPLES_DIR", "SPACE_ID"):  # the shipped pair and examples
        env.pop(key, None)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"app.py exited: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, f"app.py did not serve its page within {START_TIMEOUT_S} s"
            try:
                with opener.open(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        yield url, log, time.time()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_page_is_served_before_torch_loads_and_a_verdict_waits_for_the_model(started_app):
    url, log, page_time = started_app
    # Submitted at once: after a start, the verdict is the one thing that waits for torch.
    client = Client(url, verbose=False)
    examples = json.loads((ROOT / "examples" / "examples.json").read_text())
    example = examples["examples"][0]
    submitted = time.time()
    job = client.submit(examples["pair"], handle_file(str(ROOT / "examples" / example["file"])), api_name="/verify")
    descriptions = set()
    while not job.done():
        for unit in job.status().progress_data or []:
            descriptions.add(unit.desc)
        time.sleep(0.02)
    *_, details, why = job.result()

    events = _events(log)
    serving, ready = events["serving"], events["ready"]
    # The app's own record of the moment its page first answered: torch was not imported yet...
    assert serving["page_answered"] and serving["torch_imported"] is False, serving
    assert serving["time"] <= page_time + 2.0 and serving["time"] <= ready["time"]
    # ...and was, with the default pair, once it said it was ready.
    assert ready["torch_imported"] and ready["pair"] == examples["pair"] and ready["error"] is None, ready
    # While it loaded, the request said so (when it reached the app well before the model was ready).
    if ready["time"] - submitted > 2.0:
        assert LOADING in descriptions, (descriptions, ready["time"] - submitted)
    # The verdict: the pair's own answer for a known member, with the why after it.
    assert details["pair"] == examples["pair"] and isinstance(details["is_member"], bool)
    assert 0.0 <= details["member_probability"] <= 1.0 and "What decided it" in why
    # Until the page's load event describes the pair, the status line says the model is loading.
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "config", timeout=10) as r:
        config = json.loads(r.read())
    status = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "pair-status")
    assert LOADING in status["props"]["value"]


def test_building_the_page_imports_neither_torch_nor_timm():
    code = ("import os; os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'\n"
            "import sys\nfrom amint.ui import build_app, common\ndemo = build_app()\n"
            "print(sorted({'torch', 'timm', 'matplotlib', 'amint.pair'} & set(sys.modules)))\n"
            # The queue gradio's Blocks sets up itself carries the app's settings (AmintBlocks.queue).
            "q = demo._queue\nprint(q.max_size == common.QUEUE_MAX_SIZE, "
            "q.default_concurrency_limit == common.MODEL_CONCURRENCY)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip().splitlines()[-2:] == ["[]", "True True"], out.stderr[-2000:]
