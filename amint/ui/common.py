"""What every tab shares: where the pairs live, the pair selector, the in-memory pair cache, and
turning library exceptions into messages a non-technical user can act on.

A pair is named in the UI (and in the API) by one string: the name of a folder in the models
directory (``$AMINT_MODELS_DIR``, default ``models/`` next to ``app.py``), or a Hugging Face Hub repo
id ``owner/name`` with an optional ``@revision``.

Importing this module imports no torch (the page is served before it loads: amint/ui/wake.py); a pair
is loaded, with the library, when a handler first asks for it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from amint.card import dataset_name
from amint.catalog import CARD_NAME, CONFIG_NAME

from . import wake

if TYPE_CHECKING:
    from amint.pair import AuditedPair

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_SIZE = 4  # pairs kept in memory; the default pair is small, Hub pairs may not be

# --- serving many users at once (chosen on the 2-core CPU: benchmarks/app_load.py) -------------
# Every handler that runs the model (verify, its examples, audit) shares one concurrency group of
# this many slots: one per core, each scoring with one torch thread. Two threads per request on two
# shared cores ran a verify 10x slower than one (oversubscribed intra-op pools spin against each
# other), and more slots than cores only make every request in flight slower.
MODEL_CONCURRENCY_ID = "model"
MODEL_CONCURRENCY = max(1, int(os.environ.get("AMINT_CONCURRENCY") or (os.cpu_count() or 1)))
TORCH_THREADS = max(1, int(os.environ.get("AMINT_TORCH_THREADS") or 1))
# Gradio runs every synchronous handler (and upload and output processing) on one thread pool of
# this size (launch(max_threads), gradio's default 40). Each thread that ever runs the model keeps its
# own native scratch buffers (oneDNN, malloc), so a large pool that lets any thread pick up a verify
# grows the server's memory with the number of threads, not with the load. Model slots, plus room for
# a training stream and uploads, page loads and the pair selector.
MAX_THREADS = int(os.environ.get("AMINT_MAX_THREADS") or MODEL_CONCURRENCY + 6)
# Requests waiting beyond this are refused at once ("queue full") instead of waiting minutes: at
# 2-4 verifies a second on two cores, the 100th in line waits about 30-50 s.
QUEUE_MAX_SIZE = int(os.environ.get("AMINT_QUEUE_MAX") or 100)
# Gradio's cache (uploads and the images it serves back): every 5 minutes, delete what is older than
# 15 minutes. Long enough to download an audit's CSV after it finishes; under a full queue it bounds
# the cache to about 15 minutes of results (tens of MB) instead of growing for ever.
DELETE_CACHE = (300, 900)
# The app's own scratch files (audit CSVs) live here, pruned to this age on every write.
SCRATCH_MAX_AGE_S = DELETE_CACHE[1]


# How often the server hands freed heap pages back to the system (glibc keeps them otherwise).
HEAP_TRIM_SECONDS = 10.0


def configure_serving() -> None:
    """Process-wide settings for a server: bounded malloc arenas, and a background thread that returns
    freed heap memory to the system. (One torch thread per request is set when torch loads: wake.warm_up.)"""
    _limit_malloc_arenas()
    _start_heap_trimmer()


_trimmer_started = threading.Event()


def _start_heap_trimmer(interval: float = HEAP_TRIM_SECONDS) -> None:
    """glibc's free() keeps pages in its arenas; after a burst of concurrent requests (decoded uploads,
    occlusion batches, PNGs) they stay resident: +280 MB after 50 x 10 concurrent verifies. malloc_trim
    returns them; it takes milliseconds and runs off the request path. No-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return
    if _trimmer_started.is_set():
        return
    _trimmer_started.set()

    def loop() -> None:
        while True:
            time.sleep(interval)
            trim(0)

    threading.Thread(target=loop, name="amint-heap-trim", daemon=True).start()


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each worker thread its own heap arena (up to 8 per core) and rarely returns their
    free pages: under gradio's thread pool the server's memory grew by ~600 MB over 500 requests.
    Two arenas (as MALLOC_ARENA_MAX=2 would) keep freed memory reusable. No-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def scratch_dir(kind: str) -> Path:
    """A folder for files the app writes itself (not gradio's cache), pruned of old files on each call."""
    from amint.uploads import prune_folder

    import tempfile

    folder = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio") / "amint" / kind
    folder.mkdir(parents=True, exist_ok=True)
    prune_folder(folder, keep=1000, max_age_s=SCRATCH_MAX_AGE_S)
    return folder


def limits_note() -> gr.Markdown:
    """The upload limits in small print under an upload box."""
    from amint.uploads import limits_words

    return gr.Markdown(limits_words(), elem_classes=["limits-note"])


def models_dir() -> Path:
    """Where local pairs live: $AMINT_MODELS_DIR, else models/ in the repository."""
    env = os.environ.get("AMINT_MODELS_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / "models"


def examples_dir() -> Path:
    env = os.environ.get("AMINT_EXAMPLES_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / "examples"


def is_public_deployment() -> bool:
    """A Hugging Face Space sets SPACE_ID; there training and publishing stay off unless enabled."""
    return bool(os.environ.get("SPACE_ID"))


def training_enabled() -> bool:
    return not is_public_deployment() or os.environ.get("AMINT_ENABLE_TRAINING") == "1"


# --- the pairs on disk -------------------------------------------------------------------------


def local_pairs() -> list[str]:
    """Names of the folders in the models directory that hold a pair (a config.json)."""
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and (d / CONFIG_NAME).is_file())


def default_pair() -> str | None:
    """The Fashion-MNIST pair when there is one, else the first local pair."""
    names = local_pairs()
    preferred = [n for n in names if n.startswith("fashion-mnist")]
    return (preferred or names or [None])[0]


def default_control() -> str | None:
    """The default pair's passive control when it is in the models folder (``<default>-passive``, made by the
    README's command), else None: what "Compare with another pair" offers first."""
    name = default_pair()
    return f"{name}-passive" if name and f"{name}-passive" in local_pairs() else None


def _describe_local(name: str) -> str:
    try:
        cfg = json.loads((models_dir() / name / CONFIG_NAME).read_text())
        return f"{name}  ({cfg.get('backbone', '?')} on {dataset_words(cfg.get('dataset', ''))})"
    except (OSError, ValueError):
        return name


def dataset_words(dataset: str) -> str:
    """'imagefolder:/long/tmp/path/shapes' reads as 'images from shapes'."""
    return f"images from {dataset_name(dataset)}" if dataset.startswith("imagefolder:") else dataset_name(dataset)


def pair_choices() -> list[tuple[str, str]]:
    """(label, value) for the selector: local pairs, then the Hub pairs loaded in this process."""
    local = [(_describe_local(n), n) for n in local_pairs()]
    hub = [(f"{key}  (Hub)", key) for key in _CACHE.keys() if "/" in key]
    return local + hub


def selector_update(value: str | None = None) -> gr.Dropdown:
    """A fresh choice list (new pairs appear at once), keeping or setting the value."""
    return gr.Dropdown(choices=pair_choices(), value=value) if value else gr.Dropdown(choices=pair_choices())


# --- loading, cached ---------------------------------------------------------------------------


@dataclass
class LoadedPair:
    name: str  # as the user gave it: local folder name or owner/name[@rev]
    pair: AuditedPair
    folder: Path  # where config.json and README.md are (a Hub snapshot for Hub pairs)

    @property
    def card(self) -> str:
        path = self.folder / CARD_NAME
        return path.read_text() if path.is_file() else ""


class PairCache:
    """At most CACHE_SIZE loaded pairs, least recently used out first; one load at a time."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._pairs: OrderedDict[str, LoadedPair] = OrderedDict()
        self._lock = threading.Lock()

    def keys(self) -> list[str]:
        return list(self._pairs)

    def get(self, name: str) -> LoadedPair:
        with self._lock:
            if name in self._pairs:
                self._pairs.move_to_end(name)
                return self._pairs[name]
            loaded = _load(name)
            self._pairs[name] = loaded
            while len(self._pairs) > self.size:
                self._pairs.popitem(last=False)
            return loaded

    def forget(self, name: str) -> None:
        with self._lock:
            self._pairs.pop(name, None)


def _is_repo_id(text: str) -> bool:
    from amint.pair import check_repo_id

    try:
        check_repo_id(text)
    except ValueError:
        return False
    return True


def _load(name: str) -> LoadedPair:
    from amint.pair import AuditedPair, resolve_pair_folder, split_revision

    local = models_dir() / name
    if "/" not in name and "\\" not in name and name not in ("", ".", "..") and (local / CONFIG_NAME).is_file():
        folder = local
    elif _is_repo_id(split_revision(name)[0]):
        repo_id, revision = split_revision(name)
        folder = resolve_pair_folder(repo_id, revision, os.environ.get("HF_TOKEN") or None)
    else:
        raise FileNotFoundError(
            f"There is no pair called “{name}”. Pick one from the list, or type a Hugging Face repo id "
            "such as owner/name (optionally owner/name@revision)."
        )
    return LoadedPair(name, AuditedPair.from_pretrained(folder), folder)


_CACHE = PairCache()


def load_cached(name: str) -> LoadedPair:
    """A pair by its exact name, from the cache or loaded into it (the wake loads the default one)."""
    return _CACHE.get(name)


def get_pair(name: str | None, progress=None) -> LoadedPair:
    """The loaded pair for a selector value; gr.Error in plain words when it cannot be loaded.

    Waits for the model to have loaded after a start (wake); a gr.Progress shows "Loading the model…".
    """
    wake.wait(progress)
    name = (name or "").strip()
    if not name:
        name = default_pair() or ""
    if not name:
        raise gr.Error("No pair is selected, and none was found in the models folder. "
                       "Type a Hugging Face repo id in the pair box, or train one in the Train tab.",
                       title="No pair")
    with user_errors(f"Could not load the pair “{name}”"):
        return _CACHE.get(name)


def forget_pair(name: str) -> None:
    _CACHE.forget(name)


@contextmanager
def user_errors(what: str):
    """Turn the library's exceptions into gr.Error with the library's own (plain) message."""
    try:
        yield
    except gr.Error:
        raise
    except PermissionError as e:
        raise gr.Error(f"{what}: access denied. {e}", title="Access denied") from e
    except ConnectionError as e:
        raise gr.Error(f"{what}: the Hugging Face Hub could not be reached. Check the connection and try "
                       f"again. ({e})", title="Hub unreachable") from e
    except FileNotFoundError as e:
        raise gr.Error(f"{what}: {_strip_quotes(e)}", title="Not found") from e
    except ValueError as e:
        raise gr.Error(f"{what}: {e}", title="Not valid") from e


def _strip_quotes(e: BaseException) -> str:
    # FileNotFoundError(str) keeps the str; FileNotFoundError(errno, msg, path) needs formatting.
    return e.args[0] if len(e.args) == 1 else str(e)


def describe(loaded: LoadedPair) -> str:
    """One paragraph on the selected pair for the status line."""
    c = loaded.pair.config
    m = c.metrics or {}
    parts = [f"**{loaded.name}** · {c.backbone} trained on {dataset_words(c.dataset)} · "
             f"{len(c.class_names)} classes · input {c.image_size}×{c.image_size}"]
    # Each reading by its AUC (0.5 is guessing): its accuracy at a threshold set for few false alarms reads like
    # chance for a reading that ranks members well but calls few of them (the trace pair: 54.5% at AUC 0.921).
    if "auc" in m:  # the headline reading's: the aMINT verdict (a legacy pair's combined one)
        title = "combined reading" if c.readings and "combined" in c.readings else "aMINT verdict"
        parts.append(f"{title} AUC {m['auc']:.3f}")
    if "auc" in (m.get("fingerprint") or {}):
        parts.append(f"fingerprint AUC {m['fingerprint']['auc']:.3f}")
    if "auc" in m or "auc" in (m.get("fingerprint") or {}):
        parts[-1] += " (0.5 is guessing)"
    if "task_accuracy" in m:
        parts.append(f"classification accuracy {m['task_accuracy']:.1%}")
    return " · ".join(parts)


# --- the selector shown above the tabs --------------------------------------------------------


@dataclass
class Selector:
    dropdown: gr.Dropdown
    load: gr.Button
    status: gr.Markdown


def pair_selector() -> Selector:
    default = default_pair()
    with gr.Row(equal_height=False, elem_id="pair-row"):
        dropdown = gr.Dropdown(
            choices=pair_choices(),
            value=default,
            allow_custom_value=True,
            label="Audited model (pair)",
            info="Pick one, or type a Hugging Face repo id (owner/name, optionally @revision) and press Load.",
            scale=4,
            min_width=280,
            elem_id="pair-dropdown",
        )
        load = gr.Button("Load", variant="secondary", scale=0, min_width=100, elem_id="pair-load")
    # Until the page's load event describes the pair (after a start, once torch and the pair have loaded).
    status = gr.Markdown(wake.LOADING_WORDS, elem_id="pair-status")
    return Selector(dropdown, load, status)


def load_pair(name: str | None) -> tuple[str, gr.Dropdown]:
    """API ``load_pair``: load (or take from the cache) a pair; returns its summary and the new list."""
    loaded = get_pair(name)
    return describe(loaded), selector_update(loaded.name)


def wire_selector(demo: gr.Blocks, sel: Selector) -> None:
    sel.load.click(load_pair, sel.dropdown, [sel.status, sel.dropdown], api_name="load_pair")
    # Picking from the list (or pressing Enter on a typed id) loads at once; opening the page too.
    # Any new value (picked, typed, or set by a training run or an example) updates the summary line.
    sel.dropdown.change(_status_only, sel.dropdown, sel.status, api_visibility="private", show_progress="minimal")
    demo.load(_on_page_load, sel.dropdown, [sel.status, sel.dropdown], api_visibility="private")


def _status_only(name: str | None) -> str:
    return _on_page_load(name)[0]


def _on_page_load(name: str | None) -> tuple[str, gr.Dropdown]:
    if not (name or default_pair()):
        return ("No pair found in the models folder yet: type a Hugging Face repo id above, or train one "
                "in the Train tab."), selector_update()
    try:
        return load_pair(name)
    except gr.Error as e:
        return f"**Could not load this pair.** {e.message}", selector_update()
