"""Waking fast: the page is served before torch has loaded; torch and the default pair load right after.

The page is built from what imports without torch (amint.catalog, amint.edits' table, the pairs'
config.json, examples.json). Once the launched app answers its own page, one background thread
imports torch and what a verdict needs, sets torch's thread count and loads the default pair. Every
handler that runs a model waits for that first (its outputs say "Loading the model…" meanwhile), and
the pair selector's status line says the same until the page's load event can describe the pair.

``AMINT_WAKE_LOG=FILE`` appends one JSON line per step ("serving", then "ready"), each with the time
and whether torch was imported by then: how tests and benchmarks/app_latency.py see a wake from outside.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

LOADING = "Loading the model…"
LOADING_WORDS = (f"**{LOADING}** The page was served first; the model takes a few seconds more after a start. "
                 "A verdict asked for meanwhile waits for it.")
SERVING_TIMEOUT_S = 15.0  # if the page never answers our own request (a proxy, SSR), warm up anyway

_lock = threading.Lock()
_thread: threading.Thread | None = None
_ready = threading.Event()


def start(demo) -> None:
    """Start the wake (once per process): wait until ``demo`` serves its page, then load the model."""
    global _thread
    with _lock:
        if _thread is not None:
            return
        _thread = threading.Thread(target=_wake, args=(demo,), name="amint-wake", daemon=True)
        _thread.start()


def is_ready() -> bool:
    """True once the model has loaded, or when no wake was started (a handler called without launch())."""
    return _thread is None or _ready.is_set()


def wait(progress=None) -> None:
    """Block until the model has loaded; with a gr.Progress, the waiting outputs say so meanwhile."""
    if is_ready():
        return
    if progress is not None:
        progress(None, desc=LOADING)
    _ready.wait()


def warm_up() -> str | None:
    """Import torch and what a verdict needs, one torch thread per request, and load the default pair.

    Returns the default pair's name (None when there is none). A pair that cannot load is left for
    the page's load event to report in words.
    """
    import torch

    from . import common

    torch.set_num_threads(common.TORCH_THREADS)
    import amint.plots  # noqa: F401  (what the Verify tab draws with)
    import amint.verify  # noqa: F401

    from . import svg  # noqa: F401

    name = common.default_pair()
    if name:
        try:
            common.load_cached(name)
        except Exception:  # noqa: BLE001 - reported by the page (common._on_page_load), not here
            pass
    return name


def _wake(demo) -> None:
    answered = _wait_until_serving(demo)
    _log("serving", page_answered=answered)
    pair, error = None, None
    try:
        pair = warm_up()
    except Exception as e:  # noqa: BLE001 - the handlers import again and report it in words
        error = f"{type(e).__name__}: {e}"
    finally:
        _ready.set()
    _log("ready", pair=pair, error=error)


def _wait_until_serving(demo, timeout: float = SERVING_TIMEOUT_S) -> bool:
    """Until the launched app answers a request for its page (any HTTP status: it is serving)."""
    while not (getattr(demo, "is_running", False) and getattr(demo, "local_url", None)):
        time.sleep(0.02)  # launch() sets both once its server listens
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with opener.open(demo.local_url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.02)
    return False


def _log(event: str, **fields) -> None:
    path = os.environ.get("AMINT_WAKE_LOG")
    if not path:
        return
    record = {"event": event, "time": time.time(), "pid": os.getpid(), "torch_imported": "torch" in sys.modules,
              **fields}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
