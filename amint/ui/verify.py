"""Verify tab: one image in, the membership verdict out, with what the model saw and why.

The layout needs only the edit table and the examples index; the handlers import the library (and
with it torch) when they run, after the wake has loaded it (amint/ui/wake.py).
"""

from __future__ import annotations

import html
import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np

from amint.edits import ADJUSTABLE

from .common import (MODEL_CONCURRENCY_ID, Selector, default_control, examples_dir, get_pair, limits_note,
                     pair_choices, selector_update, user_errors)

if TYPE_CHECKING:
    from . import svg

DISPLAY_SIDE = 224  # pixels: small inputs (28x28) are upscaled to about this for display
DEFAULT_EDIT = "jpeg"


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


def fpr_words(fpr: float | None, others: str = "never-seen images") -> str:
    """The false-positive bound at a reading's threshold, in a few words."""
    if fpr is None:
        return f"how often {others} reach it was not measured"
    if fpr <= 0:
        return f"none of the {others} held out for this bound reached it"
    return f"at most {fpr:.1%} of {others} reach it (about 1 in {max(1, round(1 / fpr))})"


def _without_prefix(words: str, word: str) -> str:
    """decision_words starts with the decision, which the card already shows in large type."""
    rest = words.removeprefix(f"{word}: ")
    return rest[:1].upper() + rest[1:]


def _prob_line(what: str, p: float, threshold: float, fpr: float | None, others: str) -> str:
    from amint.explain import percent

    a, t = f"{p:.1%}", f"{threshold:.1%}"
    if a in ("0.0%", "100.0%") and 0 < p < 1:  # 0.99994 is not 100%
        a = percent(p)
    if a == t:  # show the difference that decided it
        a, t = f"{p:.3%}", f"{threshold:.3%}"
    return (f'<div class="verdict-prob">{what} <b>{a}</b> · decision threshold {t}: '
            f"{html.escape(fpr_words(fpr, others))}</div>")


def amint_card(v) -> str:
    """The aMINT verdict's card (a legacy pair's combined reading, said so): the decision, its probability,
    threshold and false-positive bound. Where the trace head is at chance, the card says that this model shows
    no detectable trace and gives the decision as a reading, not as evidence."""
    from amint.verify import COMBINED, decision_words, verdict_word

    word = verdict_word(v)
    prob = _prob_line("Member probability", v.member_probability, v.threshold, v.threshold_fpr, "never-seen images")
    if v.reading == COMBINED:
        kicker = "Combined reading (legacy pair: trace head and memories calibrated together)"
    else:
        kicker = "aMINT verdict · the trace head reads the model's activations"
    if v.trace_signal is False:
        return "\n".join([
            '<div class="verdict quiet" data-reading="amint">',
            f'<div class="verdict-kicker">{kicker}</div>',
            '<div class="verdict-word">No detectable trace</div>',
            f'<div class="verdict-words">This model shows no detectable trace: on calibration its trace head told '
            f"training images from never-seen ones barely better than chance (AUC {v.trace_cal_auc:.2f}; 0.5 is "
            f"chance). Its reading of this image, <b>{word}</b>, is therefore not evidence either way.</div>",
            prob,
            "</div>"])
    return "\n".join([
        f'<div class="verdict {"member" if v.is_member else "nonmember"}" data-reading="{html.escape(v.reading)}">',
        f'<div class="verdict-kicker">{kicker}</div>',
        f'<div class="verdict-word">{word}</div>',
        prob,
        f'<div class="verdict-words">{html.escape(_without_prefix(decision_words(v), word))}</div>',
        "</div>"])


def fingerprint_html(v, alone: bool = False) -> str:
    """The fingerprint on its own line: is the image itself in the pair's training index, in plain words, from
    what the lookups matched. ``alone``: the pair has no trace head, so this is the only reading (said so)."""
    from amint.verify import FINGERPRINT_QUESTION, fingerprint_answer

    found = bool(v.fingerprint_is_member)
    kicker = ("Fingerprint only: this pair has no trace head, so nothing here reads the model"
              if alone else "Fingerprint · reads the image, not the model")
    m = v.fingerprint_match
    counts = f"{m.member_tables} of {m.tables} hash tables of the {m.memory} memory" if m else ""
    if not found:
        detail = ((f"The best lookup matches training images in {counts}, too few. " if m else "")
                  + "Larger crops, rotations or another photo of the same thing are not recognised.")
    elif m and m.kind == "after small edits":
        detail = f"Looked up {m.variant}, it matches a training image in {counts}."
    else:
        detail = ((f"As uploaded, it matches a training image in {counts}; " if m else "")
                  + "a re-encoded copy (JPEG, resizing) matches like this too.")
    return "\n".join([
        f'<div class="fingerprint-line {"found" if found else "notfound"}{" alone" if alone else ""}" '
        'data-reading="fingerprint">',
        f'<div class="verdict-kicker">{kicker}</div>',
        f'<div class="fp-answer">{html.escape(FINGERPRINT_QUESTION)} <b>{html.escape(fingerprint_answer(v))}</b></div>',
        _prob_line("Fingerprint probability", v.fingerprint_probability, v.fingerprint_threshold,
                   v.fingerprint_threshold_fpr, "images not in the index"),
        f'<div class="fp-detail">{html.escape(detail[:1].upper() + detail[1:])}</div>',
        "</div>"])


def _truth_html(v, truth: str) -> str:
    member = truth == "member"
    marks = []
    if v.is_member is not None:
        right = bool(v.is_member) == member
        at_chance = " (at chance for this model)" if v.trace_signal is False else ""
        marks.append(("✔" if right else "✘") + f" The {'aMINT' if v.reading != 'combined' else 'combined'} verdict is "
                     + ("right" if right else "wrong") + at_chance)
    if v.has_fingerprint:
        right = bool(v.fingerprint_is_member) == member
        marks.append(("✔" if right else "✘") + " the fingerprint is " + ("right" if right else "wrong"))
    what = "a training member" if member else "a held-out image, never used in training"
    return (f'<div class="verdict-truth">Known answer: this image is {what}. '
            f'{html.escape("; ".join(marks))}.</div>')


def verdict_html(verdict, truth: str | None = None) -> str:
    """Both readings: the aMINT verdict's card first, then the fingerprint on its own line, then (when they
    disagree) what that means, then (for an example) whether each was right."""
    from amint.verify import readings_words

    v = verdict
    parts = []
    if v.member_probability is not None:
        parts.append(amint_card(v))
    if v.has_fingerprint:
        parts.append(fingerprint_html(v, alone=v.member_probability is None))
    disagree = [w for w in readings_words(v) if w.startswith("The two disagree")]
    if disagree:
        parts.append(f'<div class="readings-disagree">{html.escape(disagree[0])}</div>')
    if truth is not None:
        parts.append(_truth_html(v, truth))
    return f'<div class="readings">{"".join(parts)}</div>'


def _read(image: Any, name: str | None):
    """The upload as a PIL image, or gr.Error in plain words naming the file (not a temp path)."""
    from amint.verify import ImageError, load_image

    try:
        return load_image(image, name=name)
    except ImageError as e:
        message = str(e).replace(str(image), name) if isinstance(image, str) and name else str(e)
        raise gr.Error(message, title="Not an image we can read") from e


def _score_html(loaded, marks: dict[str, list[svg.Mark]], title: str) -> str:
    """Per reading (aMINT first, then the fingerprint): its calibration scores, threshold and the marked images."""
    from . import svg

    readings = loaded.pair.readings
    charts = []
    prefix = "edit" if any(m.dashed for ms in marks.values() for m in ms) else "score"
    for name, reading_marks in marks.items():
        key = f"{prefix}-{name}-"
        r = readings.get(name)
        if r is None or not reading_marks:
            continue
        label = {"amint": "aMINT verdict", "fingerprint": "Fingerprint"}.get(name, "Combined reading (legacy)")
        charts.append(f'<figure class="score-chart" data-reading="{name}"><figcaption>{label}</figcaption>'
                      f"{svg.score_svg(r.calibration, reading_marks, r.threshold, f'{label}: {title}', key)}</figure>")
    return f'<div class="score-charts">{"".join(charts)}</div>'


def _marks(verdict, label: str, dashed: bool = False) -> dict[str, list]:
    """Each reading's mark for one verdict, keyed by reading name."""
    from . import svg

    out = {}
    if verdict.member_probability is not None:
        out[verdict.reading] = [svg.Mark(label, verdict.member_probability, dashed)]
    if verdict.has_fingerprint:
        out["fingerprint"] = [svg.Mark(label, verdict.fingerprint_probability, dashed)]
    return out


def _details(loaded, verdict, name: str | None, truth: str | None) -> dict:
    details = verdict.to_dict(file=name)
    details["pair"] = loaded.name
    if truth is not None:
        details["ground_truth"] = truth
        if verdict.is_member is not None:
            details["verdict_correct"] = (truth == "member") == bool(verdict.is_member)
        if verdict.has_fingerprint:
            details["fingerprint_correct"] = (truth == "member") == bool(verdict.fingerprint_is_member)
    return details


def run_verify(loaded, image: Any, name: str | None = None, truth: str | None = None):
    """Verdict first (one forward pass), then the "why" (maps, attribution, edit saliency) as a second update."""
    from amint.verify import explain_forwarded, forward_image

    pair = loaded.pair
    with user_errors("This image cannot be checked"):
        forwarded = forward_image(pair, _read(image, name))
    verdict = forwarded.verdict
    score = _score_html(loaded, _marks(verdict, "this image"), "this image's score against the calibration images")
    top = {str(n): float(p) for n, p in verdict.top_classes}
    first = (model_view_html(verdict.model_input), verdict_html(verdict, truth), score, top,
             _details(loaded, verdict, name, truth))
    yield (*first, gr.skip())
    with user_errors("This image cannot be explained"):
        explained = explain_forwarded(pair, forwarded)
    # The verdict's outputs again (unchanged; cheap) so that the final result of an API call is complete.
    yield (*first, why_html(explained))


def model_view_html(image: np.ndarray) -> str:
    """What the model sees, inline at its own size and enlarged by the page (pixels kept sharp)."""
    from amint import plots

    return (f'<figure class="model-view"><img src="{plots.png_data_uri(image)}" alt="The image as the model receives '
            f'it: {image.shape[1]} by {image.shape[0]} pixels"><figcaption>What the model sees: its input, '
            f"{image.shape[1]}×{image.shape[0]} px, enlarged</figcaption></figure>")


def _figure(image: np.ndarray, caption: str, alt: str) -> str:
    from amint import plots

    return (f'<figure class="why-figure"><img src="{plots.png_data_uri(image)}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def why_figures(explained) -> str:
    """Per tap: where the layer responds and, where the trace carries signal, where the trace head reads evidence
    (Grad-CAM of its logit); then, per reading that carries evidence, which parts' edits move its score.

    A trace head at chance (``verdict.trace_signal`` False) gets no evidence map: its activity maps are captioned as
    activity, not evidence, and its edit map is left out (edits that move noise explain nothing). Inline images at the
    model's own size (28 px for the default pair), enlarged by the page: one small HTML update.
    """
    from amint import plots

    base = explained.verdict.model_input
    quiet = explained.verdict.trace_signal is False
    activity = "activity (not evidence: no detectable trace)" if quiet else "activity (not evidence)"
    figs = [_figure(plots.overlay(base, heat, min_side=1), f"{tap} · {activity}",
                    f"Activity of layer {tap}: bright where the layer responds. This shows activity, not evidence of "
                    "membership") for tap, heat in explained.maps]
    if not quiet:
        figs += [_figure(plots.overlay(base, heat, cmap="cividis", min_side=1), f"{tap} · trace evidence",
                         f"Layer {tap}: bright where the trace head's activity pushes its logit towards member "
                         "(Grad-CAM)") for tap, heat in explained.attribution or []]
    titles = {"amint": "the aMINT score", "fingerprint": "the fingerprint score", "combined": "the combined score"}
    for name, s in _shown_saliencies(explained):
        figs.append(_figure(plots.overlay(base, s.heat, min_side=1), f"edits that move {titles.get(name, name)}",
                            f"Parts of the image whose edits move {titles.get(name, name)}: brighter moves it more"))
    return f'<div class="why-figures">{"".join(figs)}</div>'


def _shown_saliencies(explained) -> list:
    """(reading, EditSaliency) of the readings that carry evidence: the aMINT verdict unless at chance, the rest."""
    quiet = explained.verdict.trace_signal is False
    found = getattr(explained, "saliencies", None) or (
        {explained.saliency.reading: explained.saliency} if explained.saliency is not None else {})
    return [(n, found[n]) for n in ("amint", "combined", "fingerprint") if n in found and not (n == "amint" and quiet)]


def why_html(explained) -> str:
    """Per reading, the bars that add up to its answer (its start, then each part of its evidence) with their
    sentences; a trace head at chance in words only; what the fingerprint matched; the maps; what the edits showed."""
    from amint.explain import match_words

    v = explained.verdict
    groups: dict = {}
    for p in explained.evidence:
        groups.setdefault(p.reading, []).append(p)
    drawn = [p for p in explained.evidence if p.is_evidence]
    scale = max((abs(p.contribution) for p in drawn), default=1.0) or 1.0
    titles = {"amint": "The aMINT verdict: the trace head, reading the model",
              "combined": "The combined verdict (legacy): the trace head and the memories together",
              "fingerprint": "The fingerprint: the hashed memories, reading the image (not the model)",
              None: "Not calibrated"}
    sections = []
    for reading, parts in groups.items():
        rows = [f'<p class="why-reading"><b>{html.escape(titles.get(reading, str(reading)))}.</b></p>']
        if reading == "fingerprint":
            rows.append(f'<p class="why-match">{html.escape(match_words(v.fingerprint_match))}</p>')
        if not any(p.is_evidence for p in parts):
            rows += [f'<p class="why-no-evidence">{html.escape(p.words)}</p>' for p in parts
                     if not p.name.startswith("start_")]
            sections.append("".join(rows))
            continue
        for p in parts:
            width = 50 * abs(p.contribution) / scale
            side = "pos" if p.contribution >= 0 else "neg"
            rows.append(f'<div class="why-row"><div class="why-bar {side}" style="--w:{width:.1f}%" '
                        f'aria-hidden="true"></div><div class="why-text">{html.escape(p.words)}</div></div>')
        total = sum(p.contribution for p in parts)
        rows.append(f'<p class="why-total">Sum {total:+.1f}: {"at or above" if total >= 0 else "below"} the threshold, '
                    f'so {"“member”" if total >= 0 else "“not a member”"}.</p>')
        sections.append("".join(rows))
    shown = _shown_saliencies(explained)
    matter = " ".join(html.escape(s.words) for _, s in shown) if shown else \
        "No reading here carries evidence an edit could move, so no part of the image is singled out."
    quiet = v.trace_signal is False
    legend = ("Per tapped layer, <i>activity</i> is where the layer responds: activity, not evidence. "
              + ("This model shows no detectable trace, so no <i>trace evidence</i> map is drawn."
                 if quiet else "<i>Trace evidence</i> is where the trace head's reading of that activity pushes "
                 "towards “member” (Grad-CAM of its logit).")
              + (" The last maps show which parts' edits move each score." if shown else ""))
    return ('<div class="why"><p><b>What decided it.</b> Each reading that carries evidence is a sum of bars in logit '
            "units, counted from its threshold: the reading's start, then each part of its evidence; to the right "
            "(orange) pushes towards “member”, to the left (blue) towards “not a member”.</p>"
            + "".join(sections)
            + f"<p><b>Which parts of the image matter.</b> {matter}</p>"
            + f"<p>{legend}</p>"
            + why_figures(explained) + "</div>")


def verify(pair_name: str, image: Any, progress=gr.Progress()):
    """API ``verify``: (pair, image) -> model input, verdict, score chart, top classes, details; then, as a
    second update, the why (evidence per part, per-tap maps and edit saliency as inline images, in words)."""
    source, name = _payload_source(image)
    yield from run_verify(get_pair(pair_name, progress), source, name)


# --- edit and watch ------------------------------------------------------------------------------


def _edit_choices() -> list[tuple[str, str]]:
    return [(f"{name}: {edit.label}", name) for name, edit in ADJUSTABLE.items()]


def edit_slider(edit_name: str) -> gr.Slider:
    """The strength slider for an edit: its range, step, default and what it means."""
    e = ADJUSTABLE.get(edit_name) or ADJUSTABLE[DEFAULT_EDIT]
    return gr.Slider(minimum=e.low, maximum=e.high, step=e.step, value=e.default, label=e.label)


def verify_edited(pair_name: str, image: Any, edit: str, strength: float | None, progress=gr.Progress()) -> tuple:
    """API ``verify_edited``: (pair, image, edit name, strength) -> original and edited image as the model
    sees them, both scores on the calibration chart with the verdict held or changed, details."""
    from amint.verify import verify_edited as lib_verify_edited

    loaded = get_pair(pair_name, progress)
    source, name = _payload_source(image)
    with user_errors("This edit cannot be checked"):
        result = lib_verify_edited(loaded.pair, _read(source, name), edit, strength)
    a, b = result.original, result.edited
    label = f"{edit} {strength:g}" if strength is not None and edit in ADJUSTABLE else edit
    marks = _marks(a, "original")
    for k, m in _marks(b, "edited", dashed=True).items():
        marks.setdefault(k, []).extend(m)
    chart = _score_html(loaded, marks, "the original's and the edited image's scores")
    cls = "holds" if result.holds and result.fingerprint_holds is not False else "changes"
    badges = []
    if a.is_member is not None:
        title = "Combined verdict (legacy)" if a.reading == "combined" else "aMINT verdict"
        badges.append(f"{title}: {'holds' if result.holds else 'changes'}")
    if a.has_fingerprint:
        badges.append(f"Fingerprint: {'holds' if result.fingerprint_holds else 'changes'}")
    words = (f'<div class="edit-result {cls}"><b>{html.escape(" · ".join(badges))}.</b> '
             f"{html.escape(result.words())}</div>")
    details = {"pair": loaded.name, "edit": edit, "strength": strength, "verdict_holds": result.holds,
               "fingerprint_holds": result.fingerprint_holds,
               "original": a.to_dict(file=name), "edited": b.to_dict(file=f"{name} ({label})")}
    return (upscale(a.model_input), upscale(b.model_input), words + chart, details)


# --- two pairs, one image ----------------------------------------------------------------------


def compare(pair_a: str, pair_b: str, image: Any, progress=gr.Progress()) -> tuple[str, dict]:
    """API ``compare``: (pair, second pair, image) -> both verdicts side by side with what the difference means."""
    from amint.verify import comparison_words, verify_image

    if not (pair_b or "").strip():
        raise gr.Error("Pick a second pair to compare with.", title="No second pair")
    first, second = get_pair(pair_a, progress), get_pair(pair_b)
    source, name = _payload_source(image)
    with user_errors("This image cannot be compared"):
        img = _read(source, name)
        va, vb = verify_image(first.pair, img), verify_image(second.pair, img)
    words = comparison_words(first.name, va, first.pair.config, second.name, vb, second.pair.config)
    cards = "".join(f'<div class="compare-card"><div class="compare-name">{html.escape(n)}</div>{verdict_html(v)}</div>'
                    for n, v in ((first.name, va), (second.name, vb)))
    page = f'<div class="compare">{cards}</div><p class="compare-words">{html.escape(words)}</p>'
    pairs = [{"pair": n, **v.to_dict(name)} for n, v in ((first.name, va), (second.name, vb))]
    return page, {"image": name, "words": words, "pairs": pairs}


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


def _yes_no(answer: dict | None) -> str | None:
    return None if answer is None else ("yes" if answer.get("is_member") else "no")


def _caption(ex: dict) -> str:
    """The known answer, then each reading's answer (yes = member / in the index): ≠ where the two readings
    differ, ◆ where the control pair's aMINT verdict differs from this pair's."""
    parts = ["member" if ex["truth"] == "member" else "not a member"]
    top = _yes_no(ex.get("amint") or ex.get("combined"))
    fp = _yes_no(ex.get("fingerprint"))
    if top:
        parts.append(f"{'aMINT' if 'amint' in ex else 'combined'} {top}")
    if fp:
        parts.append(f"fingerprint {fp}")
    marks = ("≠" if top and fp and top != fp else "") + ("◆" if ex.get("amint_differs_from_control") else "")
    return " · ".join(parts) + (f" {marks}" if marks else "")


def _probability_medians(examples: list[dict], key: str) -> tuple[float, float] | None:
    """Median member probability of a reading on the members and on the never-seen examples, where both exist."""
    sides = [[ex[key]["probability"] for ex in examples if key in ex and "probability" in ex[key]
              and (ex["truth"] == "member") == member] for member in (True, False)]
    if not all(sides):
        return None
    return tuple(float(statistics.median(side)) for side in sides)


def gallery_words(data: dict) -> str:
    """Above the gallery: what the captions say, and how often each reading is right on these examples."""
    examples = data["examples"]
    n = len(examples)
    out = [f"Images from the training set (members) and from the held-out test set (never used in training) of "
           f"the pair **{data['pair']}**. Click one: it runs with that pair and says whether each reading was right. "
           "Under each image: the known answer, then each reading's answer (yes = member, or in the training "
           "index)."]
    counts = []
    for key, title in (("amint", "the aMINT verdict"), ("combined", "the combined verdict"),
                       ("fingerprint", "the fingerprint")):
        known = [ex for ex in examples if key in ex]
        if known:
            right = sum(ex[key]["is_member"] == (ex["truth"] == "member") for ex in known)
            counts.append(f"{title} is right on {right} of {len(known)}")
    if counts:
        out.append("On these examples " + "; ".join(counts) + ".")
    ranks = _probability_medians(examples, "amint")
    if ranks is not None and ranks[0] > ranks[1]:
        missed = any(ex["truth"] == "member" and not ex["amint"].get("is_member") for ex in examples if "amint" in ex)
        out.append(f"The aMINT verdict's member probability is higher on the members (median {ranks[0]:.2f}, against "
                   f"{ranks[1]:.2f} on the never-seen images)"
                   + (": it says “member” only above a threshold set for few false alarms, so it calls fewer members "
                      "than it ranks high." if missed else "."))
    differ = sum(1 for ex in examples if ex.get("readings_agree") is False)
    if any("readings_agree" in ex for ex in examples):
        out.append(f"**≠** marks the {differ} of {n} where the aMINT verdict and the fingerprint differ.")
    if data.get("control"):
        drawn = [ex for ex in examples if not ex.get("chosen")]
        chosen = [ex for ex in examples if ex.get("chosen")]
        marked = sum(1 for ex in drawn if ex.get("amint_differs_from_control"))
        out.append(f"**◆** marks where the aMINT verdict of **{data['control']}** (a pair trained on the same split) "
                   f"differs from this pair's: on {marked} of the {len(drawn)} drawn at random"
                   + (f"; the last {len(chosen)} were picked because they differ (so they say nothing about how "
                      "often that happens). Try one with “Compare with another pair”." if chosen else "."))
    return " ".join(out)


def verify_example(index: float, progress=gr.Progress()):
    """API ``verify_example``: run example number ``index`` with the pair it was made for."""
    data = load_examples()
    examples = data["examples"]
    i = int(index)
    if not 0 <= i < len(examples):
        raise gr.Error(f"There is no example number {i}; there are {len(examples)}.", title="No such example")
    ex = examples[i]
    loaded = get_pair(data.get("pair"), progress)
    for outputs in run_verify(loaded, ex["path"], ex["file"], truth=ex["truth"]):
        yield (ex["path"], *outputs, selector_update(loaded.name))


def _on_example_select(evt: gr.SelectData, progress=gr.Progress()):
    yield from verify_example(evt.index, progress)


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
        with gr.Column(scale=2, min_width=300):
            # On a phone the columns stack: the verdict comes right after the button.
            verdict = gr.HTML(
                '<div class="verdict empty">Upload an image or pick an example below: the aMINT verdict says '
                "whether the selected model carries a trace of it, and the fingerprint whether the image itself is "
                "in the pair's training index.</div>",
                elem_id="verify-verdict",
            )
            score = gr.HTML(elem_id="verify-score")
            with gr.Row(equal_height=False):
                model_view = gr.HTML(elem_id="verify-model-view", min_width=160)
                top = gr.Label(label="The model's prediction", num_top_classes=5, elem_id="verify-top", min_width=200)
    with gr.Accordion("Why: what decided it, and which parts of the image matter", open=True):
        why = gr.HTML(elem_id="verify-why")
    with gr.Accordion("Edit it and watch the verdict", open=True, elem_id="verify-edit"):
        gr.Markdown("Do what people do to a photo before they upload it, and see whether the verdict holds.")
        with gr.Row(equal_height=False):
            edit = gr.Dropdown(_edit_choices(), value=DEFAULT_EDIT, label="Edit", scale=2, min_width=220,
                               elem_id="edit-name")
            e = ADJUSTABLE[DEFAULT_EDIT]
            strength = gr.Slider(e.low, e.high, value=e.default, step=e.step, label=e.label, scale=3, min_width=220,
                                 elem_id="edit-strength")
            edit_button = gr.Button("Apply the edit and check", variant="secondary", scale=1, min_width=160,
                                    elem_id="edit-button")
        with gr.Row(equal_height=False):
            before = gr.Image(label="Original (as the model sees it)", interactive=False, height=220,
                              elem_classes=["pixelated"], buttons=[], min_width=140, elem_id="edit-before")
            after = gr.Image(label="Edited (as the model sees it)", interactive=False, height=220,
                             elem_classes=["pixelated"], buttons=[], min_width=140, elem_id="edit-after")
            with gr.Column(scale=2, min_width=280):
                edit_result = gr.HTML(elem_id="edit-result")
        edit_details = gr.JSON(visible=False)
    with gr.Accordion("Compare with another pair", open=False, elem_id="verify-compare"):
        gr.Markdown("The same image through a second pair: for instance the passive control (the same training "
                    "images and training index, its detector added after training), or a pair you trained in the Train "
                    "tab. Pairs that ship one training index give one fingerprint answer; only the aMINT verdict "
                    "reads the models.")
        with gr.Row(equal_height=False):
            other = gr.Dropdown(choices=pair_choices(), value=default_control(), allow_custom_value=True, label="Second pair",
                                scale=3, min_width=240, elem_id="compare-pair")
            compare_button = gr.Button("Compare", variant="secondary", scale=1, min_width=120,
                                       elem_id="compare-button")
        comparison = gr.HTML(elem_id="compare-result")
        compare_details = gr.JSON(visible=False)
    with gr.Accordion("Details (JSON)", open=False):
        details = gr.JSON(label="Verdict", elem_id="verify-json")

    outputs = [model_view, verdict, score, top, details, why]
    # Preprocessing off: the handlers read the upload themselves, so an unreadable file gets a plain
    # message from amint.verify instead of a generic error from the image component.
    button.click(verify, [sel.dropdown, image], outputs, api_name="verify", preprocess=False,
                 concurrency_id=MODEL_CONCURRENCY_ID)
    edit.change(edit_slider, edit, strength, api_visibility="private", show_progress="hidden")
    edit_button.click(verify_edited, [sel.dropdown, image, edit, strength], [before, after, edit_result, edit_details],
                      api_name="verify_edited", preprocess=False, concurrency_id=MODEL_CONCURRENCY_ID)
    compare_button.click(compare, [sel.dropdown, other, image], [comparison, compare_details], api_name="compare",
                         preprocess=False, concurrency_id=MODEL_CONCURRENCY_ID)
    # A pair trained or loaded meanwhile (the main selector changes then) appears in the second list too.
    sel.dropdown.change(lambda: gr.Dropdown(choices=pair_choices()), None, other, api_visibility="private",
                        show_progress="hidden")

    data = load_examples()
    if data["examples"]:
        gr.Markdown("### Examples with known answers\n" + gallery_words(data), elem_id="verify-examples-title")
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
