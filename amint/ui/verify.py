"""Verify tab: one image in, the membership verdict out, with what the model saw and why."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from amint.verify import ImageError, decision_words, explain_image, load_image

from . import plots
from .common import (MODEL_CONCURRENCY_ID, Selector, examples_dir, get_pair, limits_note, selector_update,
                     user_errors)

DISPLAY_SIDE = 224  # pixels: small inputs (28x28) are upscaled to about this for display


# --- helpers for display -------------------------------------------------------------------------


def upscale(image: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """Nearest-neighbour upscale by a whole factor, so a 28x28 input shows its real pixels."""
    factor = max(1, side // max(image.shape[:2]))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _payload_source(image: Any) -> tuple[Any, str | None]:
    """A gr.Image value with preprocessing off (a FileData dict), or a path/array from examples."""
    if image is None:
        raise gr.Error("Upload an image first (or take one with the webcam, or paste one).", title="No image")
    if isinstance(image, dict):
        path = image.get("path")
        if not path:
            raise gr.Error("The image did not arrive; please upload it again.", title="No image")
        return path, image.get("orig_name") or Path(path).name
    if isinstance(image, (str, Path)):
        return str(image), Path(image).name
    return image, None


def fpr_words(fpr: float | None) -> str:
    """How often "Member" is said of an image the model never saw, in words."""
    if fpr is None:
        return "How often this detector calls a never-seen image a member was not measured for this model."
    if fpr <= 0:
        return ("For comparison, none of the never-seen calibration images was called a member, so false "
                "alarms are rare (but not impossible).")
    return (f"For comparison, {fpr:.1%} of the images this model never saw are called “Member” by mistake "
            f"(about 1 in {max(1, round(1 / fpr))}): that is this detector's false-positive rate.")


def _without_prefix(words: str, word: str) -> str:
    """decision_words starts with the decision, which the card already shows in large type."""
    rest = words.removeprefix(f"{word}: ")
    return rest[:1].upper() + rest[1:]


def verdict_html(verdict, truth: str | None = None) -> str:
    """The verdict card: the decision in large type, the probability, and how often it is wrong."""
    member = bool(verdict.is_member)
    word = "Member" if member else "Not a member"
    cls = "member" if member else "nonmember"
    p, t = f"{verdict.member_probability:.1%}", f"{verdict.threshold:.1%}"
    if p == t:  # show the difference that decided it
        p, t = f"{verdict.member_probability:.3%}", f"{verdict.threshold:.3%}"
    lines = [
        f'<div class="verdict {cls}">',
        f'<div class="verdict-word">{word}</div>',
        f'<div class="verdict-prob">Member probability <b>{p}</b> (decision threshold {t})</div>',
        f'<div class="verdict-words">{html.escape(_without_prefix(decision_words(verdict), word))}</div>',
    ]
    if not member:  # the member wording already says how often "Member" is a false alarm
        lines.append(f'<div class="verdict-fpr">{html.escape(fpr_words(verdict.threshold_fpr))}</div>')
    if truth is not None:
        right = (truth == "member") == member
        mark = "✔ The verdict is right" if right else "✘ The verdict is wrong"
        lines.append(f'<div class="verdict-truth {"right" if right else "wrong"}">{mark}: this image is '
                     f'{"a training member" if truth == "member" else "a held-out image the model never saw"}.</div>')
    lines.append("</div>")
    return "\n".join(lines)


def run_verify(loaded, image: Any, name: str | None = None, truth: str | None = None) -> tuple:
    pair = loaded.pair
    with user_errors("This image cannot be checked"):
        try:
            img = load_image(image, name=name)
        except ImageError as e:
            message = str(e).replace(str(image), name) if isinstance(image, str) and name else str(e)
            raise gr.Error(message, title="Not an image we can read") from e
        explained = explain_image(pair, img)
    verdict, maps, saliency = explained.verdict, explained.maps, explained.saliency
    base = verdict.model_input
    gallery = [(upscale(plots.overlay(base, heat)), f"activations at {tap}") for tap, heat in maps]
    score_plot = plots.plot_score_distribution(
        pair.config.calibration, [verdict.member_probability], verdict.threshold,
        title="This image's score against the calibration images",
    )
    top = {str(name_): float(p) for name_, p in verdict.top_classes}
    details = verdict.to_dict(file=name)
    details["pair"] = loaded.name
    if truth is not None:
        details["ground_truth"] = truth
        details["verdict_correct"] = (truth == "member") == bool(verdict.is_member)
    return (
        upscale(base),
        verdict_html(verdict, truth),
        score_plot,
        top,
        gallery,
        upscale(plots.overlay(base, saliency)),
        details,
    )


def verify(pair_name: str, image: Any) -> tuple:
    """API ``verify``: (pair, image) -> model input, verdict, score plot, top classes, maps, saliency, details."""
    source, name = _payload_source(image)
    return run_verify(get_pair(pair_name), source, name)


# --- examples with ground truth ---------------------------------------------------------------


def load_examples() -> dict:
    """examples/examples.json (written by examples/make_examples.py), or an empty set."""
    index = examples_dir() / "examples.json"
    if not index.is_file():
        return {"pair": None, "examples": []}
    data = json.loads(index.read_text())
    for ex in data.get("examples", []):
        ex["path"] = str(examples_dir() / ex["file"])
    return data


def _caption(ex: dict) -> str:
    truth = "member" if ex["truth"] == "member" else "not a member"
    return f"{truth} · {ex.get('class', '')}".strip(" ·")


def verify_example(index: float) -> tuple:
    """API ``verify_example``: run example number ``index`` with the pair it was made for."""
    data = load_examples()
    examples = data["examples"]
    i = int(index)
    if not 0 <= i < len(examples):
        raise gr.Error(f"There is no example number {i}; there are {len(examples)}.", title="No such example")
    ex = examples[i]
    loaded = get_pair(data.get("pair"))
    outputs = run_verify(loaded, ex["path"], ex["file"], truth=ex["truth"])
    return (ex["path"], *outputs, selector_update(loaded.name))


def _on_example_select(evt: gr.SelectData) -> tuple:
    return verify_example(evt.index)


# --- layout ------------------------------------------------------------------------------------


def build(sel: Selector) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            image = gr.Image(
                sources=["upload", "webcam", "clipboard"],
                type="filepath",
                label="Image to check",
                height=300,
                elem_id="verify-image",
            )
            button = gr.Button("Check this image", variant="primary", elem_id="verify-button")
            limits_note()
            model_view = gr.Image(label="What the model sees (its input, enlarged)", interactive=False,
                                  height=240, elem_classes=["pixelated"], buttons=[])
        with gr.Column(scale=2, min_width=300):
            verdict = gr.HTML(
                '<div class="verdict empty">Upload an image or pick an example below: the verdict says '
                "whether the selected model was trained on it.</div>",
                elem_id="verify-verdict",
            )
            score_plot = gr.Plot(label="Where this score falls", show_label=False, elem_id="verify-score-plot")
            top = gr.Label(label="The model's prediction", num_top_classes=5, elem_id="verify-top")
    with gr.Accordion("Why: activation maps and membership saliency", open=True):
        with gr.Row():
            maps = gr.Gallery(label="Activation maps of the tapped layers (read by the membership detector)",
                              columns=3, height="auto", allow_preview=True, object_fit="contain",
                              elem_classes=["pixelated"], scale=2, elem_id="verify-maps")
            saliency = gr.Image(label="Saliency: pixels that move the membership score most",
                                interactive=False, height=280, elem_classes=["pixelated"], buttons=[], scale=1,
                                elem_id="verify-saliency")
    with gr.Accordion("Details (JSON)", open=False):
        details = gr.JSON(label="Verdict", elem_id="verify-json")

    outputs = [model_view, verdict, score_plot, top, maps, saliency, details]
    # Preprocessing off: the handler reads the upload itself, so an unreadable file gets a plain
    # message from amint.verify instead of a generic error from the image component.
    button.click(verify, [sel.dropdown, image], outputs, api_name="verify", preprocess=False,
                 concurrency_id=MODEL_CONCURRENCY_ID)

    data = load_examples()
    if data["examples"]:
        gr.Markdown(
            f"### Examples with known answers\nImages from the training set (members) and from the held-out test "
            f"set (never seen) of the pair **{data['pair']}**. Click one: it runs with that pair and says "
            f"whether the verdict was right.",
            elem_id="verify-examples-title",
        )
        gallery = gr.Gallery(
            value=[(ex["path"], _caption(ex)) for ex in data["examples"]],
            columns=8, rows=None, height="auto", allow_preview=False, object_fit="contain",
            show_label=False, elem_classes=["pixelated"], elem_id="verify-examples", interactive=False,
        )
        example_outputs = [image, *outputs, sel.dropdown]
        gallery.select(_on_example_select, None, example_outputs, api_visibility="private",
                       concurrency_id=MODEL_CONCURRENCY_ID)
        # The same, by number, for API clients.
        index = gr.Number(visible=False, precision=0)
        index.submit(verify_example, index, example_outputs, api_name="verify_example",
                     concurrency_id=MODEL_CONCURRENCY_ID)
