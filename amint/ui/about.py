"""About tab: membership inference and this demo, for readers who are not machine-learning experts.

Every figure on it is read from the default pair's config.json (its metrics and readings) or from a results file
in benchmarks/results that names that pair; none is typed in. Without a pair the text says what the readings are,
with no numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from amint.catalog import CONFIG_NAME, WEIGHTS_NAME, weights_sha256

from .common import REPO_ROOT, default_pair, models_dir

TRACE_SIGNAL_AUC = 0.6  # amint.readings.TRACE_SIGNAL_AUC (not imported: the page is built before torch)
CONTROLS = REPO_ROOT / "benchmarks" / "results" / "controls.json"

INTRO = """
## What this demo does

Image classifiers learn from a **training set**: thousands of pictures collected by whoever built the
model. Once the model is published, nobody outside can see that set. This demo answers one question
about a particular model: **was this image (or this collection of images) in its training set?**
That question is called *membership inference*.

## Why it matters

- **Privacy.** Photos of people, medical scans or private documents may have been used without consent.
  Being able to check is a first step towards holding a model's builder to account.
- **Copyright.** Artists and photographers want to know whether their work was used to train a model.
- **Regulation.** Laws such as the EU AI Act and data-protection rules (GDPR) ask model builders to
  document their training data. An audit tool lets someone verify the claim instead of taking it on trust.

## How it works

This demo implements **Active Membership Inference Test (aMINT)** (DeAlcala et al., ICCV 2025). The
classifier being audited is trained **together with** a small network, the *trace head*, that reads the
classifier's internal activity (the activation maps shown in the Verify tab), on purpose, by the model
builder, so that training leaves a trace of its images that can be read later. Each pair here gives two
answers per image, each calibrated with its own threshold and false-positive rate:

- the **aMINT verdict**: the trace head reading the model. Does *this model* carry a trace of the image?
  It is the method the paper proposes, and the only answer that reads the model.
- the **fingerprint**: a compact memory of fingerprints of the training images, taken as the model
  receives them (short codes, no copy of any image). Is this image, or a re-saved, enlarged,
  screenshotted or slightly moved copy of it, in the training index shipped with the pair? It reads
  the image, not the model.
"""

READING = """
## How to read a verdict

- **Member probability**: the aMINT verdict's calibrated score between 0% and 100% (the fingerprint has
  its own). Higher means the image looks more like a training image to that reading.
- **Member / Not a member**: the score compared with a threshold. The threshold was set on images kept
  aside for that purpose, not on the images used to measure how well the reading does.
- **False-positive rate**: how often an image the model **never saw** is still called a member. The
  rate shown is an upper bound, measured on never-seen images that were kept aside and not used to set
  the threshold, for each kind of edit (the worst kind is shown). If it is 5%, at most about 1 in 20
  unseen images is flagged by mistake.
- **How much one answer is worth** depends on how well its reading separates members from never-seen
  images (the Model tab shows it). From a reading that finds most members at a low false-positive rate,
  a “Member” is strong evidence, not proof; from a reading at chance, a “Member” is about as likely a
  false alarm as a hit.
- **Auditing a set** (Audit tab) is more reliable than one image: if far more images are flagged than
  that rate explains, the *p-value* is small. A p-value below 0.001 means such a result would almost
  never happen by chance if none of the images had been used. Identical images count once.
"""

OUTRO = """
## Learn more

- Paper: D. DeAlcala, A. Morales, J. Fierrez, G. Mancera, R. Tolosana, J. Ortega-Garcia,
  *Active Membership Inference Test (aMINT): Enhancing Model Auditability with Multi-Task Learning*,
  ICCV 2025 ([arXiv:2509.07879](https://arxiv.org/abs/2509.07879)).
- Every tab can also be called from code: see “Use via API” at the bottom of the page (on a computer).
"""


def _pct(x: float) -> str:
    return f"{x:.2%}" if 0.999 < x < 1 else f"{x:.1%}"


def _auc(x: float) -> str:
    return f"{x:.5f}" if x > 0.999 else f"{x:.3f}"


def pair_words(name: str, cfg: dict) -> list[str]:
    """What the pair's own numbers say about its two readings (config.json's metrics and readings), in sentences."""
    m = cfg.get("metrics") or {}
    readings = cfg.get("readings") or {}
    fp = m.get("fingerprint") or {}
    n_m, n_n = m.get("n_members"), m.get("n_nonmembers")
    scored = (f"{n_m:,} scored members (held out from calibration, not from training) against {n_n:,} never-seen "
              "test images") if n_m and n_n else "its scored members against never-seen test images"
    out = []
    auc, cal = m.get("auc"), (readings.get("amint") or {}).get("cal_auc")
    if m.get("reading") == "amint" and auc is not None:
        said = (f"On **{name}**, the pair this demo opens with, the aMINT verdict separates {scored} with AUC "
                f"{_auc(auc)} (0.5 is guessing, 1 is perfect)")
        if cal is not None and cal < TRACE_SIGNAL_AUC:
            said += (f"; on its calibration images, AUC {_auc(cal)}. This model shows no detectable trace: its "
                     "aMINT verdicts say little either way")
        elif cal is not None:
            said += f"; on its calibration images, AUC {_auc(cal)}: this model carries a trace the trace head reads"
        out.append(said + ".")
        out += trace_controls_words(cfg)
    elif "amint" not in readings:
        out.append(f"**{name}**, the pair this demo opens with, gives no aMINT verdict of the two-reading kind "
                   "(it has no trace head, or it was calibrated before the readings were separated).")
    if fp.get("auc") is not None:
        said = f"Its fingerprint separates the same images with AUC {_auc(fp['auc'])}"
        if fp.get("tpr_at_1pct_fpr") is not None:
            said += f" and finds {_pct(fp['tpr_at_1pct_fpr'])} of the members at a 1% false-positive rate"
        out.append(said + ".")
        if auc is not None and cal is not None and cal < TRACE_SIGNAL_AUC:
            out.append("So on this pair the fingerprint carries the detection, and it reads the images, not the "
                       "model.")
    return out


def trace_controls_words(cfg: dict) -> list[str]:
    """Where the trace lives, from the controls the pair's config carries (``training.trace_controls``): the
    fresh-head probe on this model against a model trained without the membership loss, and the task's cost."""
    tc = (cfg.get("training") or {}).get("trace_controls") or {}
    fresh = tc.get("fresh_head") or {}
    active, passive = (fresh.get(k, {}).get("auc") for k in ("active", "passive"))
    if active is None or passive is None:
        return []
    # A pair whose own controls are not run yet carries an earlier recipe's (controls_from): said, not blurred.
    earlier = tc.get("controls_from")
    kind = (f"a model of the earlier recipe ({earlier['joint_epochs']} epochs; this model's own control is not run "
            "yet)" if earlier else "the same kind of model")
    base_model = "the earlier recipe's model" if earlier else "the model"
    said = (f"Is the trace in the model itself, or only in the trace head that reads it? A new trace head trained on this frozen "
            f"model with some of its training images finds the others, which no head ever saw, with AUC {_auc(active)}; "
            f"on {kind} trained for its task alone, with AUC {_auc(passive)}. The trace is in the model "
            f"(`{tc.get('record', 'benchmarks/trace_controls.py')}`).")
    task, base = (tc.get(k, {}).get("task_accuracy") for k in ("active", "passive"))
    if task is not None and base is not None:
        said += (f" It costs the model some of its skill: {_pct(task)} of test images classified right, against "
                 f"{_pct(base)} for {base_model} trained for its task alone.")
    return [said]


# The edit families named in words (amint.edits' suite), for a page built before torch is imported.
_EDIT_WORDS = {"jpeg75": "re-saved as JPEG", "resize224": "enlarged", "screenshot": "screenshotted",
               "shift1": "moved by one pixel", "crop92": "cropped slightly"}


def trace_edit_words(cfg: dict) -> list[str]:
    """How the aMINT verdict holds on edited copies, from the pair's own edit table (metrics.edits), where its
    trace carries signal: the trace reads the image as the model receives it."""
    m = cfg.get("metrics") or {}
    edits = m.get("edits") or {}
    cal = ((cfg.get("readings") or {}).get("amint") or {}).get("cal_auc")
    if m.get("reading") != "amint" or cal is None or cal < TRACE_SIGNAL_AUC:
        return []
    shown = [(words, edits[name]["auc"]) for name, words in _EDIT_WORDS.items() if name in edits]
    if not shown:
        return []
    return ["The aMINT verdict reads the image exactly as the model receives it, so edits weaken its trace (AUC on "
            "copies " + ", ".join(f"{words} {_auc(auc)}" for words, auc in shown) + "; 0.5 is guessing)."]


def limits_words(name: str, cfg: dict, controls: dict | None) -> list[str]:
    """The limits that depend on the pair's numbers: whether its trace carries signal, classic attacks beside it,
    and (when a results file names this pair) the untrained-backbone control."""
    m = cfg.get("metrics") or {}
    cal = ((cfg.get("readings") or {}).get("amint") or {}).get("cal_auc")
    out = []
    base = [b for b in (m.get("baselines") or {}).values() if b.get("mint_accuracy") is not None]
    attacks = ""
    if base:
        lo, hi = min(b["mint_accuracy"] for b in base), max(b["mint_accuracy"] for b in base)
        attacks = (f" Classic attacks on this model's own outputs are right {_pct(lo)}–{_pct(hi)} of the time, where "
                   "guessing gives 50%.")
    if m.get("reading") == "amint" and m.get("auc") is not None and cal is not None:
        if cal < TRACE_SIGNAL_AUC:
            out.append(f"The aMINT verdict works only where training left a trace the trace head can read. aMINT "
                       f"builds the detector in on purpose, but on {name} the trace head stayed at chance (AUC "
                       f"{_auc(m['auc'])}); it does not detect members there." + attacks)
        else:
            out.append(f"The aMINT verdict works only where training left a trace the trace head can read: on {name} "
                       f"it does (AUC {_auc(m['auc'])}), for this model's own training images." + attacks)
    out += trace_edit_words(cfg)
    if controls:
        results = controls.get("results") or {}
        untrained = results.get("untrained") or {}
        trace = (untrained.get("evidence") or {}).get("trace", {}).get("auc")
        if untrained.get("auc") is not None and trace is not None:
            out.append(f"A control with a random, untrained classifier and the same memories finds the members as "
                       f"well (AUC {_auc(untrained['auc'])} for one readout of its memories and trace head together, "
                       f"measured before the two readings were separated; its trace head alone {_auc(trace)}; "
                       "benchmarks/results/controls.json): the fingerprint does not depend on what the model learned.")
    return out


def _controls_for(name: str, folder: Path | None = None) -> dict | None:
    """benchmarks/results/controls.json when it measured this pair (its folder name and, where the record names
    them, the same weights), else None."""
    try:
        controls = json.loads(CONTROLS.read_text())
    except (OSError, ValueError):
        return None
    folders = [Path(p).name for p in (controls.get("pairs") or {}).values()]
    if name not in folders[:1]:
        return None
    measured = controls.get("model_sha256")
    if measured and folder is not None and (folder / WEIGHTS_NAME).is_file():
        if weights_sha256(folder) != measured:
            return None  # a pair of that name, but not the weights the controls measured
    return controls


def about_text(name: str | None, cfg: dict | None, controls: dict | None = None) -> str:
    """The About page for the pair ``name`` (its config.json as a dict), or without numbers when there is none."""
    numbers = pair_words(name, cfg) if name and cfg else []
    shipped = ("\n## On the pair shipped with this demo\n\n" + " ".join(numbers) + "\n") if numbers else ""
    limits = [
        "It detects **this model's own** training data, nothing more. It says nothing about any other model, even one "
        "whose training set was the same.",
        *(limits_words(name, cfg, controls) if name and cfg else []),
        "**Edited copies** that are re-saved, enlarged, screenshotted, brightened or shifted by a pixel or two are "
        "recognised by the fingerprint. Larger crops, rotations, mirror images, filters, or another photo of the same "
        "object are not: a “Not a member” answer on such an image is weak evidence.",
        "Some images the model never saw **will** be flagged: that is the false-positive rate, shown with every "
        "verdict.",
        "The Model tab shows both readings' numbers for the selected pair, measured on members held out from "
        "calibration (not from training) and never-seen test images, with classic attacks beside them.",
    ]
    return (INTRO + shipped + READING + "\n## Limits, honestly\n\n" + "\n".join(f"- {t}" for t in limits) + "\n"
            + OUTRO)


def _default_about() -> str:
    name = default_pair()
    if name is None:
        return about_text(None, None)
    try:
        cfg = json.loads((models_dir() / name / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return about_text(None, None)
    return about_text(name, cfg, _controls_for(name, models_dir() / name))


def build() -> None:
    gr.Markdown(_default_about(), elem_id="about-text", elem_classes=["prose-narrow"])
