"""One image in, one verdict out: was it in the audited model's training set?

Preprocessing follows the pair's config.json (channels, image size); the decision uses the threshold
calibrated at training time. Batched inference for many images; a bad file fails alone.
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
from .edits import apply_edit_at
from .evaluate import score_images
from .preprocess import preprocess
from .pair import AuditedPair, PairConfig
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
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise ImageError(f"{name} is not a readable image (array of shape {a.shape}; expected HxW, HxWx3 or HxWx4)")
    if a.dtype != np.uint8:
        # Float images in [0, 1] are common (matplotlib, skimage); anything else is clipped to 0..255.
        scale = 255.0 if np.issubdtype(a.dtype, np.floating) and np.nanmax(a) <= 1.0 else 1.0
        a = np.clip(np.nan_to_num(a.astype(np.float64) * scale), 0, 255).round().astype(np.uint8)
    return Image.fromarray(a)


# --- verdicts ---------------------------------------------------------------------------------


@dataclass
class Verdict:
    member_probability: float
    is_member: bool
    threshold: float
    threshold_fpr: float | None  # the pair's stated false-positive bound at the threshold (PairConfig.threshold_fpr)
    predicted_class: str
    class_probability: float
    top_classes: list[tuple[str, float]]  # top-5 (class name, probability)
    model_input: np.ndarray  # uint8 HxW (gray) or HxWx3: what the model actually sees

    def to_dict(self, file: str | None = None) -> dict[str, Any]:
        return {
            "file": file,
            "member_probability": self.member_probability,
            "is_member": self.is_member,
            "threshold": self.threshold,
            "threshold_fpr": self.threshold_fpr,
            "predicted_class": self.predicted_class,
            "class_probability": self.class_probability,
            "top_classes": [[name, p] for name, p in self.top_classes],
        }


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
    scores = score_images(pair, torch.stack(good))
    verdicts = iter(
        _verdict(pair.config, x, float(p), logits)
        for x, p, logits in zip(good, scores.member_probability, scores.class_logits)
    )
    return [s if isinstance(s, ImageError) else next(verdicts) for s in slots]


def _verdict(config: PairConfig, x: torch.Tensor, probability: float, logits: torch.Tensor) -> Verdict:
    probs = torch.softmax(logits.float(), dim=0)
    top_p, top_i = probs.topk(min(TOP_K, len(probs)))
    top = [(_class_name(config, int(i)), float(p)) for p, i in zip(top_p, top_i)]
    image = x.numpy()
    return Verdict(
        member_probability=probability,
        is_member=probability >= config.threshold,
        threshold=config.threshold,
        threshold_fpr=config.threshold_fpr,
        predicted_class=top[0][0],
        class_probability=top[0][1],
        top_classes=top,
        model_input=image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0),
    )


def _class_name(config: PairConfig, i: int) -> str:
    return config.class_names[i] if i < len(config.class_names) else str(i)


@dataclass
class Explained:
    verdict: Verdict
    maps: list[tuple[str, np.ndarray]]  # per tap: activation energy (where the layer responds), HxW in [0, 1]
    attribution: list[tuple[str, np.ndarray]] | None  # per tap: where the trace head reads membership (Grad-CAM)
    saliency: explain.EditSaliency  # which regions' edits move the member probability
    evidence: list[explain.EvidencePart]  # what each part of the head contributed to the decision


@dataclass
class Forwarded:
    """One image through the pair once: its model input, the pair's output and the verdict."""

    x: torch.Tensor  # uint8 (C, H, W), as the model sees it
    output: Any  # PairOutput of the batch of one
    verdict: Verdict


def forward_image(pair: AuditedPair, image: Any, name: str | None = None) -> Forwarded:
    """Decode, preprocess and run one image: the verdict now, and what ``explain_forwarded`` reuses later."""
    x = preprocess(load_image(image, name), pair.config)
    out = explain.forward_one(pair, x)
    return Forwarded(x, out, _verdict(pair.config, x, float(out.member_probability[0]), out.class_logits[0].cpu()))


def explain_forwarded(pair: AuditedPair, fwd: Forwarded) -> Explained:
    """Activation maps, trace attribution, edit saliency and evidence of an image already run once."""
    x, out = fwd.x, fwd.output
    maps = explain.heat_maps(pair.config.taps, out.maps, tuple(x.shape[1:]))
    return Explained(fwd.verdict, maps, explain.trace_attribution(pair, x, out.maps), explain.edit_saliency(pair, x),
                     explain.evidence_parts(pair, out.evidence[0]))


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
        return self.original.is_member == self.edited.is_member

    def words(self) -> str:
        a, b = self.original, self.edited
        before = f"{verdict_word(a)} ({explain.percent(a.member_probability)})"
        after = f"{verdict_word(b)} ({explain.percent(b.member_probability)})"
        if self.holds:
            return f"The verdict holds: {before} before the edit, {after} after it."
        if a.is_member:
            return (f"The verdict changes: {before} before, {after} after. This edit hides the image from this "
                    "detector: a member edited this way would be missed.")
        return (f"The verdict changes: {before} before, {after} after. After the edit the image looks like a "
                "training image to the detector: if the original was never used, this is a false alarm.")


def verify_edited(pair: AuditedPair, image: Any, edit: str, strength: float | None = None,
                  name: str | None = None) -> EditedVerdict:
    """The verdict for an image and for the same image edited (``edits.apply_edit_at``), in one batch."""
    original = load_image(image, name)
    edited = apply_edit_at(original, edit, strength)
    a, b = verify_images(pair, [original, edited])
    return EditedVerdict(a, b, edited, edit, strength)  # type: ignore[arg-type]


def verdict_word(v: Verdict) -> str:
    return "Member" if v.is_member else "Not a member"


def comparison_words(name_a: str, a: Verdict, config_a: PairConfig, name_b: str, b: Verdict,
                     config_b: PairConfig) -> str:
    """What the difference between two pairs' verdicts on one image means, in one or two sentences."""
    same_split = bool(config_a.split.get("members_sha256")) and \
        config_a.split.get("members_sha256") == config_b.split.get("members_sha256")
    modes = [c.training.get("config", {}).get("mode") for c in (config_a, config_b)]
    said = (f"{name_a} says {verdict_word(a)} ({explain.percent(a.member_probability)}); "
            f"{name_b} says {verdict_word(b)} ({explain.percent(b.member_probability)}).")
    if not same_split:
        return (said + " The two models were trained on different sets of images, so they answer different "
                "questions: an image can be in one training set and not in the other.")
    both = " Both were trained on the same images"
    differ = modes[0] != modes[1]
    if differ:
        both += f" ({name_a} {_MODE_WORDS.get(modes[0], 'trained')}; {name_b} {_MODE_WORDS.get(modes[1], 'trained')})"
    if a.is_member == b.is_member:
        return said + both + (", and they agree: for this image, how the model was trained does not change the "
                              "answer." if differ else ", and they agree.")
    return said + both + (", so one of them is wrong here: the difference is what the way of training "
                          "changes." if differ else ", so one of them is wrong here: their detectors differ.")


_MODE_WORDS = {
    "active": "trained with active MINT, model and detector together",
    "passive": "trained first, its detector added afterwards (passive MINT)",
    "untrained": "a random, untrained model (a control)",
}


# --- words for people -------------------------------------------------------------------------


def decision_words(v: Verdict) -> str:
    """The verdict in plain words, with how often it is wrong for images the model never saw."""
    score = f"membership score {v.member_probability:.2f}, threshold {v.threshold:.2f}"
    if v.is_member:
        return (f"Member: the model most likely saw this image during training ({score}). "
                f"{_false_alarm_words(v.threshold_fpr)}")
    return (f"Not a member: the model shows no sign of having trained on this image ({score}). "
            "This is not proof that it was never used: the test misses some members.")


def _false_alarm_words(fpr: float | None) -> str:
    if fpr is None:
        return "How often this verdict is wrong for unseen images was not measured for this model."
    if fpr <= 0:
        return "During calibration, no image the model never saw got this verdict, so mistakes are rare."
    if fpr <= 0.5:
        return f"Among images the model never saw, at most about 1 in {round(1 / fpr)} get this verdict by mistake."
    return f"Among images the model never saw, at most about {round(fpr * 10)} in 10 get this verdict by mistake."
