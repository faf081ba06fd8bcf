"""Train tab: train a new pair (audited model + MINT head) with live progress, stop it, publish it.

The training itself is ``amint.train.train_pair`` in a background thread; its callback feeds a queue
that the Start handler (a generator) turns into progress, plots and a log. The worker thread, not the
handler, owns the job: it releases the one-job-at-a-time slot and moves the finished pair into the
models folder even if the browser tab was closed.

The layout reads names and defaults that import without torch (amint.catalog, amint.backbones,
TrainConfig); the handlers import the training code when they run.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from amint.backbones import KNOWN_BACKBONES, SETUPS
from amint.catalog import available_benchmarks
from amint.train_config import TrainConfig
from amint.reveal import LEAVE_OUT, reveal_words
from amint.uploads import MB, extract_images, prune_folder

from . import wake
from .common import (Selector, forget_pair, get_pair, limits_note, models_dir, selector_update, training_enabled,
                     user_errors)
from .models import METRIC_HEADERS, metrics_table

UPLOAD = "upload"  # dataset choice: an uploaded zip of class folders
MAX_EXTRACTED_DATASETS = 3  # unpacked uploads kept, so training again on the same zip skips unpacking it
# The default pair's narrow ResNet-18: trains on a 2-core CPU in minutes per epoch.
CPU_FRIENDLY_BACKBONE = {"channels": [16, 32, 64, 128], "stem_type": "deep", "stem_width": 8}
CPU_LIMIT = int(os.environ.get("AMINT_CPU_TRAIN_LIMIT", "60000"))  # member-epochs allowed without a GPU
UPDATE_SECONDS = 0.5  # at most two UI updates a second from the step stream
CPU_NOTICE = ("**No GPU found:** training runs on the CPU. Small runs (a few hundred members, a few epochs, a "
              "narrow backbone) take minutes; the paper-sized ones need a GPU.")

try:  # on a ZeroGPU Space, GPU work must run inside a spaces.GPU function
    import spaces

    _gpu = spaces.GPU(duration=int(os.environ.get("AMINT_GPU_SECONDS", "900")))
except ImportError:  # elsewhere a no-op
    def _gpu(fn):
        return fn


@_gpu
def _run_training(cfg: TrainConfig, callback, should_stop, bench):
    from amint.launch import train_multiprocess, visible_gpus
    from amint.train import resolve_device, train_pair

    gpus = visible_gpus()
    if gpus > 1 and resolve_device(cfg.device).type == "cuda":  # one process per GPU, progress merged
        return train_multiprocess(cfg, gpus, callback, should_stop)
    return train_pair(cfg, callback=callback, should_stop=should_stop, bench=bench)


# --- the single training job -------------------------------------------------------------------


@dataclass
class Job:
    name: str
    final: Path
    started: float = field(default_factory=time.time)
    events: queue.Queue = field(default_factory=queue.Queue)


class JobSlot:
    """One training run at a time, in this process; Stop sets the event the loop polls."""

    def __init__(self):
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.job: Job | None = None

    def take(self, job: Job) -> None:
        if not self._lock.acquire(blocking=False):
            running = self.job.name if self.job else "another pair"
            raise gr.Error(f"A training run is already in progress ({running}). Only one runs at a time: "
                           "wait for it to finish, or press Stop.", title="Busy")
        self.stop.clear()
        self.job = job

    def release(self) -> None:
        self.job = None
        self._lock.release()

    @property
    def busy(self) -> bool:
        return self._lock.locked()


SLOT = JobSlot()


def _worker(job: Job, cfg: TrainConfig, bench) -> None:
    """Train into a hidden folder, then rename it into place: a pair appears only when complete."""
    from amint.train import TrainingCancelled

    staging = Path(cfg.out)
    try:
        _run_training(cfg, job.events.put, SLOT.stop.is_set, bench)
        shutil.rmtree(staging / "checkpoint", ignore_errors=True)  # the per-epoch checkpoint, not needed now
        staging.rename(job.final)
        forget_pair(job.name)
        outcome = ("done", job.name)
    except TrainingCancelled as e:
        outcome = ("cancelled", str(e))
    except Exception as e:  # noqa: BLE001 - reported to the user, the app keeps running
        outcome = ("error", e)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        SLOT.release()
    # Reported only once the folder is cleaned and the slot is free, so the UI never sees a half state.
    job.events.put(outcome)


# --- inputs to a TrainConfig -------------------------------------------------------------------


def _uploads_dir() -> Path:
    return Path(os.environ.get("AMINT_UPLOADS_DIR") or "~/.cache/amint/uploads").expanduser()


def extract_imagefolder(zip_path: str) -> Path:
    """Unpack an uploaded zip of class folders (once per distinct zip); returns the dataset root.

    amint.uploads checks the zip (size, ratio, paths, links) and writes its images only; the uploads
    folder keeps the MAX_EXTRACTED_DATASETS most recently used datasets, so it cannot grow without bound.
    """
    dest = _uploads_dir() / _file_digest(Path(zip_path))
    if not (dest / ".complete").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        try:
            with user_errors("The uploaded zip cannot be used"):
                if extract_images(zip_path, dest) == 0:
                    raise gr.Error("The zip holds no images (zips inside it are not opened): put one folder per "
                                   "class of .png or .jpg files in it.", title="No images")
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)  # never leave half a dataset behind
            raise
        (dest / ".complete").write_text("")
    os.utime(dest)  # just used: pruning keeps it
    prune_folder(_uploads_dir(), keep=MAX_EXTRACTED_DATASETS)
    root = dest
    # A zip of one folder (the usual way to zip a dataset) has that folder as its only entry.
    while True:
        subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
        files = [f for f in root.iterdir() if f.is_file() and not f.name.startswith(".")]
        if len(subdirs) == 1 and not files and subdirs[0].name not in ("train", "test", "val"):
            root = subdirs[0]
        else:
            return root


def _file_digest(path: Path) -> str:
    """sha256 of a file, read in chunks (an upload may be hundreds of MB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(MB), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _optional_int(value: Any, label: str) -> int | None:
    if value in (None, ""):
        return None
    v = float(value)
    if v != int(v) or v < 0:
        raise gr.Error(f"{label} must be a whole number (or empty for the default).", title="Not valid")
    return int(v)


def _pair_name(name: str, dataset: str, backbone: str, setup: str) -> str:
    if not (name or "").strip():
        base = "upload" if dataset.startswith("imagefolder:") else dataset
        name = f"{base}-{backbone}-{setup}-{time.strftime('%Y%m%d-%H%M%S')}"
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")[:96]
    if not clean:
        raise gr.Error("Choose a name made of letters, digits, '-', '_' or '.'.", title="Not valid")
    return clean


def _check_enabled() -> None:
    if not training_enabled():
        raise gr.Error("Training and publishing are turned off on this public demo. Run the app on your own "
                       "machine, or set AMINT_ENABLE_TRAINING=1 on your own Space.", title="Turned off")


def _log_line(p) -> str | None:
    """One log line for an amint.train.Progress report (None for the steps in between)."""
    if p.kind == "phase":
        return p.message or f"{p.phase}"
    if p.kind == "epoch":
        m = p.metrics
        return (f"epoch {p.epoch}/{p.epochs} ({p.phase}): task loss {m.get('task_loss', float('nan')):.3f}, "
                f"membership loss {m.get('mint_loss', float('nan')):.3f}, "
                f"trace-head accuracy {m.get('cal_trace_accuracy', float('nan')):.3f}, "
                f"AUC {m.get('cal_trace_auc', float('nan')):.3f}, test accuracy {m.get('test_accuracy', float('nan')):.3f}, "
                f"{m.get('seconds', 0):.1f} s")
    if p.kind == "done":
        return "done"
    return None


# --- handlers ----------------------------------------------------------------------------------


def train(dataset: str, upload: Any, backbone: str, setup: str, epochs: float, head_epochs: float, batch_size: float,
          mint_weight: float, seed: float, n_members: Any, n_external: Any, n_calibration: Any,
          backbone_options: str, name: str, progress=gr.Progress()):
    """API ``train``: stream status, history plot, log, metrics, ROC and the pair list while training."""
    _check_enabled()
    wake.wait(progress)
    from amint.data import default_split_sizes, load_benchmark
    from amint.train import resolve_device

    if dataset == UPLOAD or upload:
        path = upload.get("path") if isinstance(upload, dict) else upload
        if not path:
            raise gr.Error("Upload a zip of your images, one folder per class (or train/ and test/ folders "
                           "each holding class folders).", title="No dataset")
        dataset = f"imagefolder:{extract_imagefolder(path)}"
    try:
        kwargs = json.loads(backbone_options) if (backbone_options or "").strip() else {}
    except ValueError:
        kwargs = None
    if not isinstance(kwargs, dict):
        raise gr.Error('Backbone options must be a JSON object, e.g. {"channels": [16, 32, 64, 128]}.',
                       title="Not valid")
    setup = (setup or TrainConfig.setup).lower()
    if setup not in SETUPS:
        raise gr.Error(f"Setup must be one of {', '.join(SETUPS)}.", title="Not valid")
    pair_name = _pair_name(name, dataset, backbone, setup)
    final = models_dir() / pair_name
    if final.exists():
        raise gr.Error(f"A pair called “{pair_name}” already exists; choose another name.", title="Name taken")
    staging = models_dir() / f".training-{pair_name}"
    with user_errors("Training cannot start"):
        cfg = TrainConfig(dataset=dataset, backbone=backbone, backbone_kwargs=kwargs, setup=setup,
                          epochs=int(epochs), head_epochs=int(head_epochs), batch_size=int(batch_size),
                          mint_weight=float(mint_weight),
                          seed=int(seed), n_members=_optional_int(n_members, "Members"),
                          n_external=_optional_int(n_external, "External images"),
                          n_calibration=_optional_int(n_calibration, "Calibration images"), out=str(staging))
        cfg.validate()
        bench = load_benchmark(dataset)
        device = resolve_device(cfg.device)
        members = cfg.n_members or default_split_sizes(dataset, len(bench.train_images))["members"]
    if device.type == "cpu":
        if members * cfg.epochs > CPU_LIMIT:
            raise gr.Error(f"There is no GPU here, and {members} members × {cfg.epochs} epochs is too much for a "
                           f"CPU (limit {CPU_LIMIT:,} member-epochs). Lower the members or the epochs.",
                           title="Too large for a CPU")
        gr.Warning("No GPU here: training runs on the CPU, which is slow. Keep the run small.", title="CPU only")

    job = Job(pair_name, final)
    SLOT.take(job)
    try:
        models_dir().mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        thread = threading.Thread(target=_worker, args=(job, cfg, bench), name=f"train-{pair_name}", daemon=True)
        thread.start()
    except BaseException:
        SLOT.release()
        raise
    yield from _stream(job, thread, cfg, device, progress)


def _stream(job: Job, thread: threading.Thread, cfg: TrainConfig, device, progress):
    from amint import plots
    from amint.launch import visible_gpus
    from amint.train import Progress

    history: list[dict] = []
    gpus = visible_gpus() if device.type == "cuda" else 0
    where = f"{gpus} GPUs, one process each" if gpus > 1 else device.type.upper()
    log: list[str] = [f"training {job.name} on {where}: {cfg.backbone}, {cfg.setup} setup, "
                      f"{cfg.epochs} epochs, batch {cfg.batch_size}"]
    status = f"Training **{job.name}**…"
    last = 0.0
    progress(0, desc="Preparing data")
    yield status, None, "\n".join(log), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    while True:
        try:
            event = job.events.get(timeout=0.5)
        except queue.Empty:
            if thread.is_alive() or not job.events.empty():
                continue
            event = ("error", RuntimeError("the training thread ended without a result"))
        if isinstance(event, Progress):
            line = _log_line(event)
            if line:
                log.append(line)
            if event.kind == "step" and time.time() - last < UPDATE_SECONDS:
                continue
            last = time.time()
            # Several GPUs: the message says each rank's step (amint.launch.MergedProgress).
            where = f" · {event.message}" if event.kind == "step" and event.message else ""
            progress(event.fraction, desc=f"{event.phase} · epoch {event.epoch}/{event.epochs}{where}")
            if event.kind == "epoch":
                history.append(event.metrics)
                yield status, plots.plot_history(history), "\n".join(log), *([gr.skip()] * 4)
            elif line:
                yield status, gr.skip(), "\n".join(log), *([gr.skip()] * 4)
            continue
        kind, payload = event
        if kind == "done":
            loaded = get_pair(payload)
            m = loaded.pair.config.metrics
            log.append(f"saved to {job.final}")
            status = (f"**Done** in {time.time() - job.started:.0f} s: **{job.name}** is saved and selected above. "
                      f"Membership accuracy {m.get('mint_accuracy', float('nan')):.1%}, AUC {m.get('auc', float('nan')):.3f}, "
                      f"classification accuracy {m.get('task_accuracy', float('nan')):.1%}.")
            yield (status, plots.plot_history(loaded.pair.config.training.get("history", history)), "\n".join(log),
                   metrics_table(m), plots.plot_roc(m), selector_update(job.name), job.name)
        elif kind == "cancelled":
            log.append(f"stopped ({payload}); nothing was saved")
            yield "**Stopped.** Nothing was saved.", gr.skip(), "\n".join(log), *([gr.skip()] * 4)
        else:
            log.append(f"failed: {type(payload).__name__}: {payload}")
            yield f"**Training failed:** {payload}", gr.skip(), "\n".join(log), *([gr.skip()] * 4)
        return


def stop() -> str:
    """API ``stop``: ask the running training job to stop at its next step."""
    if not SLOT.busy:
        return "No training is running."
    SLOT.stop.set()
    return "Stopping at the next step…"


def publish(pair_name: str, repo_id: str, token: str, private: bool = False, leave_out: str = "",
            progress=gr.Progress()) -> str:
    """API ``publish``: push the selected pair to the Hugging Face Hub, whole or without its external tables
    ("externals") or every memory ("memories"); returns a link."""
    from amint.pair import check_repo_id, redact
    from amint.publish import publishable

    _check_enabled()
    leave_out = leave_out or ""
    if leave_out not in LEAVE_OUT:
        raise gr.Error(f"What to publish must be one of {', '.join(repr(k) for k in LEAVE_OUT)}.", title="Not valid")
    repo_id = (repo_id or "").strip()
    try:
        check_repo_id(repo_id)
    except ValueError as e:
        raise gr.Error(f"Give the Hub repo id as owner/name, e.g. your-username/amint-fashion-mnist ({e}).",
                       title="Not valid") from None
    token = (token or "").strip() or os.environ.get("HF_TOKEN") or None
    if not token:
        raise gr.Error("Publishing needs a Hugging Face access token with write permission: paste it in the "
                       "token box (or set HF_TOKEN).", title="No token")
    loaded = get_pair(pair_name)
    pair = loaded.pair
    if leave_out:
        progress(None, desc="Refitting the threshold without the left-out tables (minutes on a CPU)")
        with user_errors(f"Publishing without {leave_out} failed"):
            pair = publishable(pair, leave_out)
    try:
        url = pair.push_to_hub(repo_id, token=token, private=bool(private))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises many types; the message is what matters
        # Never echo the token: the message is shown on the page and may be logged.
        raise gr.Error(f"Publishing to {repo_id} failed: {redact(str(e), token)}", title="Publish failed") from None
    left = f" without {LEAVE_OUT[leave_out].split(':')[0]}" if leave_out else ""
    return f"Published **{loaded.name}**{left} to [{repo_id}]({url})."


# --- layout ------------------------------------------------------------------------------------

PUBLISH_CHOICES = [("Everything: model, trace head and memories", ""),
                   ("Without the external tables (weaker on edited uploads)", "externals"),
                   ("Model and trace head only (no memories)", "memories")]


def _reveal_notice(leave_out: str) -> str:
    """What the chosen upload reveals to anyone who downloads it (amint.reveal: measured figures, not typed in)."""
    options = (f"“{PUBLISH_CHOICES[1][0].split(' (')[0]}” (`push --no-externals`)",
               f"“{PUBLISH_CHOICES[2][0].split(' (')[0]}” (`push --trace-only`)")
    return f"**What this reveals.** {reveal_words(None, leave_out or '', options)}"



def _device_notice() -> gr.Markdown:
    """On page load: a notice when training would run on the CPU (as amint.train.resolve_device("auto")
    decides; torch itself is asked, so that opening the page does not import the training code)."""
    wake.wait()
    import torch

    return gr.Markdown(CPU_NOTICE, visible=not torch.cuda.is_available())



def build(sel: Selector) -> None:
    enabled = training_enabled()
    if not enabled:
        gr.Markdown("**Training and publishing are turned off on this public demo** (they need a GPU and "
                    "write access). Run the app on your own machine, or set `AMINT_ENABLE_TRAINING=1` on your "
                    "own Space, to use this tab.", elem_classes=["notice"])
    else:  # whether there is a GPU is torch's to say: filled in when the page opens, once torch has loaded
        notice = gr.Markdown(visible=False, elem_classes=["notice"], elem_id="train-device-notice")
        gr.on(None, _device_notice, None, notice, api_visibility="private", show_progress="hidden")
    datasets = [(n, n) for n in available_benchmarks() if not n.startswith("imagefolder")]
    datasets.append(("my images (upload a zip of class folders)", UPLOAD))
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            dataset = gr.Dropdown(datasets, value="fashion-mnist", label="Dataset", elem_id="train-dataset")
            upload = gr.File(file_types=[".zip"], label="Zip of images: one folder per class", visible=False,
                             elem_id="train-upload")
            limits_note()
            backbone = gr.Dropdown(list(KNOWN_BACKBONES), value="resnet18", allow_custom_value=True,
                                   label="Backbone (audited model)", elem_id="train-backbone",
                                   info="Any timm model name works.")
            setup = gr.Radio([(s.capitalize(), s) for s in SETUPS], value=TrainConfig.setup, label="Setup",
                             info="Where the membership detector reads the model: near its input, its middle "
                                  "or its output.")
            with gr.Row():
                epochs = gr.Slider(1, 100, value=TrainConfig.epochs, step=1, label="Epochs (joint training)",
                                   min_width=140, elem_id="train-epochs")
                head_epochs = gr.Slider(0, 50, value=TrainConfig.head_epochs, step=1, label="Trace-head epochs",
                                        min_width=140, elem_id="train-head-epochs",
                                        info="Then the trace head alone, on the frozen model; the memories are written once after.")
            with gr.Row():
                batch_size = gr.Slider(8, 512, value=128, step=8, label="Batch size", min_width=140, elem_id="train-batch")
            with gr.Row():
                mint_weight = gr.Slider(0, 5, value=1.0, step=0.1, label="Membership loss weight", min_width=140)
                seed = gr.Number(0, precision=0, label="Seed", min_width=100)
            with gr.Accordion("More options", open=False):
                gr.Markdown("Pool sizes: leave empty for the paper's proportions of the training split "
                            "(5/12 members, 1/12 calibration, the rest external).")
                with gr.Row():
                    n_members = gr.Number(None, precision=0, label="Members (trained on)", min_width=120,
                                          elem_id="train-members")
                    n_external = gr.Number(None, precision=0, label="External images", min_width=120,
                                           elem_id="train-external")
                    n_calibration = gr.Number(None, precision=0, label="Calibration images", min_width=120,
                                              elem_id="train-calibration")
                backbone_options = gr.Textbox(value=json.dumps(CPU_FRIENDLY_BACKBONE), label="Backbone options (JSON)",
                                              placeholder='{"channels": [16, 32, 64, 128]}',
                                              info="Passed to timm.create_model, e.g. narrower channels for a small run.",
                                              elem_id="train-options")
                name = gr.Textbox(label="Name of the new pair", placeholder="default: dataset-backbone-setup-date",
                                  elem_id="train-name")
            with gr.Row():
                start = gr.Button("Start training", variant="primary", interactive=enabled, elem_id="train-start")
                stop_btn = gr.Button("Stop", variant="stop", interactive=enabled, elem_id="train-stop")
        with gr.Column(scale=2, min_width=300):
            status = gr.Markdown("Set the options and press **Start training**.", elem_id="train-status")
            history = gr.Plot(label="Training curves (per epoch)", show_label=False, elem_id="train-history")
            log = gr.Textbox(label="Log", lines=8, max_lines=14, interactive=False, autoscroll=True,
                             elem_id="train-log")
    with gr.Row(equal_height=False):
        metrics = gr.Dataframe(headers=METRIC_HEADERS,
                               label="Result: scored members (held out from calibration only) vs test images",
                               interactive=False,
                               scale=3, elem_id="train-metrics")
        roc = gr.Plot(label="ROC curve", show_label=False, scale=2, elem_id="train-roc")
    trained = gr.Textbox(visible=False)
    with gr.Accordion("Publish the selected pair to the Hugging Face Hub", open=False):
        with gr.Row():
            repo_id = gr.Textbox(label="Repo id", placeholder="your-username/amint-my-pair", scale=2)
            token = gr.Textbox(label="Access token (write)", type="password", scale=2,
                               placeholder="empty: use HF_TOKEN from the environment")
            private = gr.Checkbox(label="Private", value=False, scale=1)
        leave_out = gr.Radio(PUBLISH_CHOICES, value="", label="What to publish", elem_id="publish-what",
                             info="Without memories the threshold is refitted on the pair's calibration split first.")
        reveal = gr.Markdown(_reveal_notice(""), elem_classes=["notice"], elem_id="publish-reveal")
        publish_btn = gr.Button("Publish", interactive=enabled)
        published = gr.Markdown()

    dataset.change(lambda d: gr.File(visible=d == UPLOAD), dataset, upload, api_visibility="private")
    start.click(
        train,
        [dataset, upload, backbone, setup, epochs, head_epochs, batch_size, mint_weight, seed, n_members, n_external,
         n_calibration, backbone_options, name],
        [status, history, log, metrics, roc, sel.dropdown, trained],
        api_name="train",
        concurrency_limit=None,  # a second request is answered at once ("already running"), not queued
        preprocess=True,
    )
    stop_btn.click(stop, None, status, api_name="stop", concurrency_limit=None)
    leave_out.change(_reveal_notice, leave_out, reveal, api_visibility="private")
    publish_btn.click(publish, [sel.dropdown, repo_id, token, private, leave_out], published, api_name="publish")
