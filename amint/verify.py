"""One image in, its readings out: the aMINT verdict (from the model) and the fingerprint (from the image).

- the aMINT verdict: does the audited model carry a trace of the image? The trace head's reading of
  the model's activation maps, calibrated (amint.readings "amint"; a legacy pair's "combined").
- the fingerprint: is the image, or a re-encoding or small move of it, in the training index shipped
  with the pair? The hashed memories' reading of the image itself; it does not read the model.

Preprocessing follows the pair's config.json (channels, image size); each decision uses its own
reading's threshold. Batched inference for many images; a bad file fails alone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from . import explain
from .edits import apply_edit, to_pil
from .evaluate import Scores, score_images
from .fingerprint import Match
from .preprocess import preprocess
from .pair import AuditedPair, PairConfig
from .readings import AMINT, COMBINED, FINGERPRINT, TRACE_SIGNAL_AUC, Reading, headline
from .uploads import UploadError, ZipEntry, bomb_words, check_image_bytes, check_image_header

TOP_K = 5


class ImageError(ValueError):
    """An input that is not a readable image; the message names the file."""


# --- loading and preprocessing ---------------------------------------------------------------


def load_image(source: str | Path | bytes | Image.Image | np.ndarray | ZipEntry, name: str | None = None) -> Image.Image:
    """Decode ``source`` fully (so a truncated file fails here, not later) or raise ImageError naming it.

    The upload limits (amint.uploads: bytes, then pixels from the header) are checked before decoding.
    """
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, name or "array")
    try:
        return _decode(source, name)
    except UploadError as err:
        raise ImageError(str(err)) from err


def _decode(source: str | Path | bytes | ZipEntry, name: str | None) -> Image.Image:
    if isinstance(source, ZipEntry):
        name = name or f"{source.archive.name}/{source.member}"
        source = source.read_bytes()
    if isinstance(source, (str, Path)):
        name = name or Path(source).name
        try:
            check_image_bytes(Path(source).stat().st_size, name)
        except FileNotFoundError:
            raise ImageError(f"{name} is not a readable image (file not found)") from None
    elif isinstance(source, (bytes, bytearray)):
        name = name or "image"
        check_image_bytes(len(source), name)
        source = io.BytesIO(source)
    else:
        raise ImageError(f"{name or 'input'} is not a readable image (unsupported type {type(source).__name__})")
    try:
        with Image.open(source) as im:
            check_image_header(im, name)
            im.load()
            # Upright now: the copy is detached from the file, and EXIF orientation would not survive it.
            return ImageOps.exif_transpose(im)
    except UploadError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name} is not a readable image (file not found)") from None
    except Image.DecompressionBombError as err:  # PIL's own guard, past 179 MP in the header
        raise ImageError(bomb_words(name, err)) from err
    except UnidentifiedImageError as err:  # its own message shows a temp path or a BytesIO repr
        raise ImageError(f"{name} is not a readable image (unknown or unsupported format)") from err
    except Exception as err:  # PIL raises many types for a broken file
        raise ImageError(f"{name} is not a readable image ({type(err).__name__}: {err})") from err


def _from_array(a: np.ndarray, name: str) -> Image.Image:
    try:
        return to_pil(a)
    except ValueError as err:
        raise ImageError(f"{name} is not a readable image ({err})") from None


# --- verdicts ---------------------------------------------------------------------------------


@dataclass
class Verdict:
    """One image's readings.

    ``member_probability``, ``is_member``, ``threshold``, ``threshold_fpr``: the aMINT verdict (the trace head's
    reading of the model), or a legacy pair's combined reading (``reading`` says which); None for a pair without a
    trace head. ``fingerprint_*``: the fingerprint (the memories' reading of the image); None without memories.
    """

    member_probability: float | None
    is_member: bool | None
    threshold: float | None
    threshold_fpr: float | None  # the reading's stated false-positive bound at its threshold
    predicted_class: str
    class_probability: float
    top_classes: list[tuple[str, float]]  # top-5 (class name, probability)
    model_input: np.ndarray  # uint8 HxW (gray) or HxWx3: what the model actually sees
    reading: str | None = AMINT  # what member_probability is: "amint", or "combined" (a legacy pair)
    trace_cal_auc: float | None = None  # the aMINT reading's calibration AUC (half A); None when not measured
    fingerprint_probability: float | None = None
    fingerprint_is_member: bool | None = None
    fingerprint_threshold: float | None = None
    fingerprint_threshold_fpr: float | None = None
    fingerprint_match: Match | None = None  # what the lookups found, from their table counts

    @property
    def trace_signal(self) -> bool | None:
        """Whether the trace head separated members from never-seen images on calibration (AUC >= 0.6);
        None when that was not measured (no trace head, or a legacy pair)."""
        return None if self.trace_cal_auc is None else self.trace_cal_auc >= TRACE_SIGNAL_AUC

    @property
    def has_fingerprint(self) -> bool:
        return self.fingerprint_probability is not None

    def to_dict(self, file: str | None = None) -> dict[str, Any]:
        """A ``verify --json`` row: the aMINT verdict's fields, the fingerprint's (for a pair with memories), the class."""
        out: dict[str, Any] = {
            "file": file,
            "member_probability": self.member_probability,
            "is_member": self.is_member,
            "threshold": self.threshold,
            "threshold_fpr": self.threshold_fpr,
            "reading": self.reading,
            "trace_signal": self.trace_signal,
            "trace_cal_auc": self.trace_cal_auc,
        }
        if self.reading == COMBINED:
            out["legacy"] = True  # calibrated before the readings were separated: `python -m amint calibrate`
        if self.has_fingerprint:
            out |= {"fingerprint_probability": self.fingerprint_probability,
                    "fingerprint_is_member": self.fingerprint_is_member,
                    "fingerprint_threshold": self.fingerprint_threshold,
                    "fingerprint_threshold_fpr": self.fingerprint_threshold_fpr,
                    "fingerprint_match": self.fingerprint_match.to_dict() if self.fingerprint_match else None}
        return out | {"predicted_class": self.predicted_class, "class_probability": self.class_probability,
                      "top_classes": [[name, p] for name, p in self.top_classes], "words": readings_words(self)}


def verify_image(pair: AuditedPair, image: Any) -> Verdict:
    """The verdict for one image; raises ImageError when it cannot be read."""
    result = verify_images(pair, [image])[0]
    if isinstance(result, ImageError):
        raise result
    return result


def verify_images(
    pair: AuditedPair,
    images: list,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    names: list[str] | None = None,
) -> list[Verdict | ImageError]:
    """Verdicts in input order; an unreadable item becomes an ImageError in its slot.

    Images are decoded one batch at a time, so a large audit never holds every decoded image.
    ``names`` (optional, same length) are used in error messages instead of the sources' own names.
    """
    total = len(images)
    results: list[Verdict | ImageError] = []
    for start in range(0, total, batch_size):
        chunk = images[start : start + batch_size]
        chunk_names = names[start : start + batch_size] if names else [None] * len(chunk)
        results += _verify_batch(pair, chunk, chunk_names)
        if progress:
            progress(len(results), total)
    return results


def _verify_batch(pair: AuditedPair, images: list, names: list[str | None]) -> list[Verdict | ImageError]:
    slots: list[torch.Tensor | ImageError] = []
    for source, name in zip(images, names):
        try:
            slots.append(preprocess(load_image(source, name), pair.config))
        except ImageError as err:
            slots.append(err)
    good = [x for x in slots if isinstance(x, torch.Tensor)]
    if not good:
        return list(slots)  # type: ignore[arg-type]
    verdicts = iter(verdicts_of(pair.config, torch.stack(good), score_images(pair, torch.stack(good))))
    return [s if isinstance(s, ImageError) else next(verdicts) for s in slots]


def verdicts_of(config: PairConfig, images: torch.Tensor, scores: Scores) -> list[Verdict]:
    """The verdicts of uint8 (N, C, H, W) model inputs from their scores (amint.evaluate.score_images)."""
    readings = scores.readings
    top, fp = headline(readings), readings.get(FINGERPRINT)
    matches = scores.matches() or [None] * len(images)
    out = []
    for i, (x, logits) in enumerate(zip(images, scores.class_logits)):
        probs = torch.softmax(logits.float(), dim=0)
        top_p, top_i = probs.topk(min(TOP_K, len(probs)))
        classes = [(_class_name(config, int(k)), float(p)) for p, k in zip(top_p, top_i)]
        image = x.numpy()
        v = Verdict(None, None, None, None, classes[0][0], classes[0][1], classes,
                    image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), reading=top)
        if top:
            r = readings[top]
            v.member_probability, v.is_member = float(scores.probabilities[top][i]), bool(scores.decisions[top][i])
            v.threshold, v.threshold_fpr, v.trace_cal_auc = r.threshold, r.threshold_fpr, _trace_auc(r)
        if fp is not None:
            v.fingerprint_probability = float(scores.probabilities[FINGERPRINT][i])
            v.fingerprint_is_member = bool(scores.decisions[FINGERPRINT][i])
            v.fingerprint_threshold, v.fingerprint_threshold_fpr = fp.threshold, fp.threshold_fpr
            v.fingerprint_match = matches[i]
        out.append(v)
    return out


def _trace_auc(reading: Reading) -> float | None:
    return reading.cal_auc if reading.name == AMINT else None


def _class_name(config: PairConfig, i: int) -> str:
    return config.class_names[i] if i < len(config.class_names) else str(i)


@dataclass
class Explained:
    verdict: Verdict
    maps: list[tuple[str, np.ndarray]]  # per tap: activation energy (where the layer responds), HxW in [0, 1]
    attribution: list[tuple[str, np.ndarray]] | None  # per tap: where the trace head reads membership (Grad-CAM)
    saliency: explain.EditSaliency | None  # which regions' edits move the aMINT verdict (else the fingerprint)
    evidence: list[explain.EvidencePart]  # what each part of the head contributed to its reading
    saliencies: dict[str, explain.EditSaliency]  # the same for every reading, from one batch


@dataclass
class Forwarded:
    """One image through the pair once: its model input, its scores (with the tapped maps) and the verdict."""

    x: torch.Tensor  # uint8 (C, H, W), as the model sees it
    scores: Scores  # of the batch of one, maps kept
    verdict: Verdict


def forward_image(pair: AuditedPair, image: Any, name: str | None = None) -> Forwarded:
    """Decode, preprocess and run one image: the verdict now, and what ``explain_forwarded`` reuses later."""
    x = preprocess(load_image(image, name), pair.config)
    scores = explain.forward_one(pair, x)
    return Forwarded(x, scores, verdicts_of(pair.config, x.unsqueeze(0), scores)[0])


def explain_forwarded(pair: AuditedPair, fwd: Forwarded) -> Explained:
    """Activation maps, trace attribution, edit saliency and evidence of an image already run once."""
    x, maps = fwd.x, fwd.scores.maps
    saliencies = explain.edit_saliencies(pair, x)
    first = headline(saliencies) or (FINGERPRINT if FINGERPRINT in saliencies else None)
    return Explained(fwd.verdict, explain.heat_maps(pair.config.taps, maps, tuple(x.shape[1:])),
                     explain.trace_attribution(pair, x, maps), saliencies.get(first) if first else None,
                     explain.evidence_parts(pair, fwd.scores), saliencies)


def explain_image(pair: AuditedPair, image: Any, name: str | None = None) -> Explained:
    """Verdict, activation maps, trace attribution, edit saliency and evidence of one image."""
    return explain_forwarded(pair, forward_image(pair, image, name))


# --- edit and watch; two pairs on one image ------------------------------------------------------


@dataclass
class EditedVerdict:
    original: Verdict
    edited: Verdict
    edited_image: Image.Image  # the edited image as a person would upload it (before preprocessing)
    edit: str
    strength: float | None

    @property
    def holds(self) -> bool:
        """The aMINT verdict (a legacy pair's combined one) is the same before and after the edit; for a pair
        without a trace head, the fingerprint's."""
        a, b = self.original, self.edited
        return a.is_member == b.is_member if a.is_member is not None else self.fingerprint_holds

    @property
    def fingerprint_holds(self) -> bool | None:
        a, b = self.original, self.edited
        return None if not a.has_fingerprint else a.fingerprint_is_member == b.fingerprint_is_member

    def words(self) -> str:
        """One sentence per reading: held or changed by the edit, with both probabilities."""
        a, b = self.original, self.edited
        out = []
        if a.is_member is not None:
            out.append(_held_words(_reading_title(a), verdict_word(a), a.member_probability, verdict_word(b),
                                   b.member_probability, bool(a.is_member), a.is_member == b.is_member))
            if a.trace_signal is False and a.is_member != b.is_member:
                out.append("This model shows no detectable trace, so the change is noise in a reading at chance, "
                           "not something the edit did to a trace.")
        if a.has_fingerprint:
            out.append(_held_words("fingerprint", fingerprint_word(a), a.fingerprint_probability, fingerprint_word(b),
                                   b.fingerprint_probability, bool(a.fingerprint_is_member),
                                   a.fingerprint_is_member == b.fingerprint_is_member))
        return " ".join(out)


def _held_words(title: str, before: str, p: float, after: str, q: float, was_member: bool, holds: bool) -> str:
    before, after = f"{before} ({explain.percent(p)})", f"{after} ({explain.percent(q)})"
    if holds:
        return f"The {title} holds: {before} before the edit, {after} after it."
    if was_member:
        return (f"The {title} changes: {before} before, {after} after: this edit hides the image from this reading, "
                "so a member edited this way would be missed.")
    return (f"The {title} changes: {before} before, {after} after: after the edit this reading takes the image for a "
            "training image; if the original was never used, this is a false alarm.")


def verify_edited(pair: AuditedPair, image: Any, edit: str, strength: float | None = None,
                  name: str | None = None) -> EditedVerdict:
    """The verdict for an image and for the same image edited (``edits.apply_edit``), in one batch."""
    original = load_image(image, name)
    edited = apply_edit(original, edit, strength)
    a, b = verify_images(pair, [original, edited])
    return EditedVerdict(a, b, edited, edit, strength)  # type: ignore[arg-type]


def verdict_word(v: Verdict) -> str:
    """The aMINT verdict (a legacy pair's combined one) in one or two words."""
    return "Member" if v.is_member else "Not a member"


def fingerprint_word(v: Verdict) -> str:
    return "In the training index" if v.fingerprint_is_member else "Not in the training index"


def _reading_title(v: Verdict) -> str:
    return "combined verdict (legacy)" if v.reading == COMBINED else "aMINT verdict"


def comparison_words(name_a: str, a: Verdict, config_a: PairConfig, name_b: str, b: Verdict,
                     config_b: PairConfig) -> str:
    """What the difference between two pairs' readings of one image means, in a few sentences.

    The fingerprints agree whenever the two pairs ship the same training index (equal ``index_sha256`` of their
    hashed memories): that says nothing about the models. The aMINT verdicts are named with their probabilities;
    a difference between them is called what the way of training changes only when both trace heads carry signal
    (calibration AUC >= TRACE_SIGNAL_AUC); where a trace head is at chance, its answer is readout noise."""
    same_split = bool(config_a.split.get("members_sha256")) and \
        config_a.split.get("members_sha256") == config_b.split.get("members_sha256")
    said = "; ".join(f"{n}: {_reading_title(v)} {verdict_word(v)} ({explain.percent(v.member_probability)})"
                     if v.is_member is not None else f"{n}: no trace head" for n, v in ((name_a, a), (name_b, b)))
    if not same_split:
        return said + (". The two models were trained on different sets of images, so they answer different "
                         "questions: an image can be in one training set and not in the other.")
    modes = [c.training.get("config", {}).get("mode") for c in (config_a, config_b)]
    # Where both have a trace head, the aMINT sentence names both verdicts; otherwise they are named first.
    named = a.is_member is not None and b.is_member is not None and COMBINED not in (a.reading, b.reading)
    out = [] if named else [said + "."]
    out.append("Both were trained on the same images" + (
        f" ({name_a} {_MODE_WORDS.get(modes[0], 'trained')}; {name_b} {_MODE_WORDS.get(modes[1], 'trained')})."
        if modes[0] != modes[1] else "."))
    if a.is_member is not None and b.is_member is not None:  # the aMINT verdicts first, then the fingerprints
        out.append(_amint_comparison(name_a, a, name_b, b, modes))
    if a.has_fingerprint and b.has_fingerprint:
        out.append(_fingerprint_comparison(name_a, a, config_a, name_b, b, config_b))
    return " ".join(out)


def _fingerprint_comparison(name_a: str, a: Verdict, config_a: PairConfig, name_b: str, b: Verdict,
                            config_b: PairConfig) -> str:
    index = [c.readings.get(FINGERPRINT, {}).get("index_sha256") for c in (config_a, config_b)]
    answers = f"{name_a}: {fingerprint_word(a).lower()}; {name_b}: {fingerprint_word(b).lower()}"
    if index[0] and index[0] == index[1]:
        if a.fingerprint_is_member == b.fingerprint_is_member:
            return (f"Their fingerprints agree: {fingerprint_word(a).lower()}. They ship the same training index "
                    "(identical hashed memories), and the fingerprint reads the image, not the models, so it cannot "
                    "tell them apart.")
        return (f"They ship the same training index (identical hashed memories), but their fingerprints answer "
                f"differently ({answers}): their fingerprint readings were calibrated differently; recalibrate both "
                "with the same targets (python -m amint calibrate).")
    if a.fingerprint_is_member == b.fingerprint_is_member:
        return f"Their fingerprints agree: {fingerprint_word(a).lower()} (their training indexes are not the same)."
    return f"Their fingerprints differ ({answers}): their training indexes are not the same."


def _amint_comparison(name_a: str, a: Verdict, name_b: str, b: Verdict, modes: list) -> str:
    """The aMINT verdicts side by side: the difference named, and what it means given each trace's signal."""
    pa, pb = explain.percent(a.member_probability), explain.percent(b.member_probability)
    legacy = [n for n, v in ((name_a, a), (name_b, b)) if v.reading == COMBINED]
    if legacy:
        return (f"{' and '.join(legacy)} {'is a legacy pair' if len(legacy) == 1 else 'are legacy pairs'}: its "
                "verdict combines the trace head and the memories, so the difference between the models' traces "
                "cannot be read from it; recalibrate it (python -m amint calibrate) for the two readings.")
    quiet = [(n, v) for n, v in ((name_a, a), (name_b, b)) if not v.trace_signal]
    loud = [(n, v) for n, v in ((name_a, a), (name_b, b)) if v.trace_signal]
    gap = abs(a.member_probability - b.member_probability)
    both = f"{name_a} {pa}, {name_b} {pb}"
    if a.is_member != b.is_member:
        what = (f"Their aMINT verdicts differ: {name_a} says {verdict_word(a).lower()} ({pa}), {name_b} says "
                f"{verdict_word(b).lower()} ({pb})")
    elif round(gap, 3) == 0:
        what = f"Their aMINT verdicts agree ({verdict_word(a).lower()}: {both})"
    else:
        what = (f"Their aMINT verdicts agree ({verdict_word(a).lower()}); their member probabilities differ by "
                f"{100 * gap:.1f} percentage points ({both})")
    if len(quiet) == 2:
        aucs = f"calibration AUC {_auc(a)} and {_auc(b)}, below {TRACE_SIGNAL_AUC}"
        if a.is_member != b.is_member or round(gap, 3) != 0:
            return (what + f", but neither model shows a detectable trace ({aucs}): at this scale the difference is "
                    "readout noise, not something the way of training changed.")
        return what + f"; neither model shows a detectable trace ({aucs}), so neither answer is evidence."
    if quiet:
        (qn, qv), (ln, lv) = quiet[0], loud[0]
        return (what + f". {qn} shows no detectable trace (calibration AUC {_auc(qv)}, below {TRACE_SIGNAL_AUC}) and "
                f"{ln} does ({_auc(lv)}): only {ln}'s verdict reads a trace of the image; {qn}'s answer is readout "
                "noise.")
    if a.is_member == b.is_member:
        return what + (": for this image, how the model was trained does not change the answer."
                       if modes[0] != modes[1] else ".")
    if modes[0] != modes[1]:
        return (what + ", and both trace heads carry signal (calibration AUC "
                f"{_auc(a)} and {_auc(b)}): one of them is wrong here, and the difference is what the way of "
                "training changes.")
    return what + ": both trace heads carry signal; one of them is wrong here: their detectors differ."


def _auc(v: Verdict) -> str:
    return "not measured" if v.trace_cal_auc is None else f"{v.trace_cal_auc:.2f}"


_MODE_WORDS = {
    "active": "trained with active MINT, model and detector together",
    "passive": "trained first, its detector added afterwards (passive MINT)",
    "untrained": "a random, untrained model (a control)",
}


# --- words for people -------------------------------------------------------------------------


def decision_words(v: Verdict) -> str:
    """The aMINT verdict in plain words (a legacy pair's combined reading, said so), with how often it is wrong
    for images the model never saw, and whether the model shows a detectable trace at all."""
    if v.member_probability is None:
        return "No aMINT verdict: this pair has no trace head, so nothing it carries reads the model."
    score = f"score {v.member_probability:.2f}, threshold {v.threshold:.2f}"
    missed = "This is not proof that it was never used: the test misses some members."
    if v.reading == COMBINED:
        what = ("this pair's combined detector (its trace head and its hashed memories, calibrated together before "
                "amint separated them, so which part decided is not told apart; the memories read the image, not the "
                "model)")
        if v.is_member:
            return (f"Member (combined reading, legacy): {what} scores this image at or above its threshold ({score}). "
                    + _false_alarm_words(v.threshold_fpr, "images the model never saw"))
        return f"Not a member (combined reading, legacy): {what} scores this image below its threshold ({score}). {missed}"
    if v.trace_signal is False:  # a head at chance: its score is not a finding either way
        side = "at or above" if v.is_member else "below"
        word = "Member" if v.is_member else "Not a member"
        odds = "as likely a false alarm as a hit" if v.is_member else "no sign either way"
        return (f"{word} (aMINT verdict): the trace head's score is {side} its threshold ({score}), but this model "
                f"shows no detectable trace: on calibration its trace head told training images from never-seen ones "
                f"barely better than chance (AUC {v.trace_cal_auc:.2f}), so this is {odds}.")
    if v.is_member:
        words = (f"Member (aMINT verdict): the trace head, reading the model's activation maps, finds a trace of this "
                 f"image ({score}). " + _false_alarm_words(v.threshold_fpr, "images the model never saw"))
    else:
        words = (f"Not a member (aMINT verdict): the trace head, reading the model's activation maps, does not find a "
                 f"trace of this image strong enough to reach its threshold ({score}; the threshold is set so that "
                 f"few never-seen images reach it). {missed}")
    return words


def fingerprint_words(v: Verdict) -> str | None:
    """The fingerprint in plain words: what the lookups matched, from their counts; None without memories."""
    if not v.has_fingerprint:
        return None
    m = v.fingerprint_match
    score = f"score {v.fingerprint_probability:.2f}, threshold {v.fingerprint_threshold:.2f}"
    counts = f"{m.member_tables} of {m.tables} hash tables of the {m.memory} memory" if m else ""
    reads = "The fingerprint reads the image, not the model."
    if v.fingerprint_is_member:
        if m and m.kind == "after small edits":
            how = (f"match after a small edit: the image is in this pair's training index: looked up {m.variant}, it "
                   f"matches a training image ({counts}; {score}).")
        else:
            how = (f"exact match: the image itself is in this pair's training index: as uploaded, it matches a training "
                   f"image ({counts}; {score}); a re-encoded copy (JPEG, resizing) matches like this too.")
        return f"Fingerprint: {how} " + _false_alarm_words(v.fingerprint_threshold_fpr, "images not in the index") \
            + " " + reads
    best = f"; the best lookup found {counts}" if m else ""
    return (f"Fingerprint: no match: the lookups find no training image like this one in this pair's training index "
            f"({score}{best}). Larger crops, rotations or another photo of the same thing are not recognised. {reads}")


FINGERPRINT_QUESTION = "Is the image itself in this pair's training index?"


def fingerprint_answer(v: Verdict) -> str | None:
    """The fingerprint's answer in a few plain words, from what its lookups matched; None without memories."""
    if not v.has_fingerprint:
        return None
    m = v.fingerprint_match
    if not v.fingerprint_is_member:
        return "No match"
    if m and m.kind == "after small edits":
        return f"Yes: match after small edits ({m.variant})" if m.variant else "Yes: match after small edits"
    return "Yes: exact match (as uploaded)"


def readings_words(v: Verdict) -> list[str]:
    """The aMINT verdict's sentence, then the fingerprint's, then (when they disagree) what that means."""
    out = [decision_words(v)] if v.member_probability is not None or not v.has_fingerprint else []
    if v.has_fingerprint:
        out.append(fingerprint_words(v))
    if v.has_fingerprint and v.is_member is not None and v.is_member != v.fingerprint_is_member:
        if v.is_member:
            out.append("The two disagree: the trace head flags the image, but the training index holds no copy of it: "
                       "either a false alarm, or a training image edited beyond what the fingerprint recognises.")
        elif v.trace_signal is False:
            out.append("The two disagree: the image is in the training index, but the trace head finds no trace of it; "
                       "expected, since this model shows no detectable trace.")
        else:
            out.append("The two disagree: the image is in the training index, but the trace head does not find a trace "
                       "of it in the model strong enough to call it a member: the model does not keep a clear trace of "
                       "every training image, or the fingerprint match is a false alarm.")
    return out


def _false_alarm_words(fpr: float | None, others: str) -> str:
    if fpr is None:
        return f"How often this answer is wrong for {others} was not measured for this pair."
    if fpr <= 0:
        return f"During calibration, none of the {others} got this answer, so mistakes are rare."
    if fpr <= 0.5:
        return f"Among {others}, at most about 1 in {round(1 / fpr)} get this answer by mistake."
    return f"Among {others}, at most about {round(fpr * 10)} in 10 get this answer by mistake."
