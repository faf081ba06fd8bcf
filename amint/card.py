"""The model card (README.md) of a pair: Hub metadata up top, then the numbers from its config."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .reveal import LEAVE_OUT, reveal_words

if TYPE_CHECKING:
    from .pair import PairConfig

_METRIC_NAMES = {
    "mint_accuracy": "MINT accuracy (calibrated threshold)",
    "mint_accuracy_at_0_5": "MINT accuracy (threshold 0.5)",
    "auc": "MINT ROC AUC",
    "tpr_at_1pct_fpr": "TPR at 1% FPR",
    "tpr_at_0_1pct_fpr": "TPR at 0.1% FPR",
}
_DATASET_IDS = {"fashion-mnist": "zalando-datasets/fashion_mnist", "mnist": "ylecun/mnist", "cifar10": "uoft-cs/cifar10",
                "cifar100": "uoft-cs/cifar100", "svhn": "ufldl-stanford/svhn"}


# The columns every metrics table shows (card, CLI, app), and its rows: each reading, then the baselines.
METRIC_COLUMNS = (("mint_accuracy", "accuracy"), ("auc", "AUC"), ("tpr_at_1pct_fpr", "TPR @ 1% FPR"),
                  ("tpr_at_0_1pct_fpr", "TPR @ 0.1% FPR"))
READING_TITLES = {"amint": "aMINT verdict (trace head)", "fingerprint": "fingerprint (hashed memories)",
                  "combined": "combined reading (legacy)"}


def metrics_reading(metrics: dict) -> str | None:
    """Which reading a metrics record's top level is: the aMINT verdict, or (a pair evaluated before the readings
    were separated, or a legacy pair) the combined one; None when it holds no reading's metrics."""
    if "reading" in metrics:
        return metrics["reading"]
    return "combined" if "auc" in metrics else None


def method_rows(metrics: dict) -> list[tuple[str, dict]]:
    """(method name, its metrics): the aMINT verdict (or a legacy combined reading), the fingerprint, then each
    baseline attack measured on the same split."""
    top = metrics_reading(metrics)
    rows = [(READING_TITLES[top], metrics)] if top else []
    if metrics.get("fingerprint"):
        rows.append((READING_TITLES["fingerprint"], metrics["fingerprint"]))
    return rows + [(name.replace("_", " "), b) for name, b in (metrics.get("baselines") or {}).items()]


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _front_matter(cfg: PairConfig) -> str:
    """Hub metadata through huggingface_hub's ModelCardData: tags, dataset and the evaluated numbers."""
    from huggingface_hub import EvalResult, ModelCardData

    m = cfg.metrics
    name = dataset_name(cfg.dataset)
    dataset_id = _DATASET_IDS.get(cfg.dataset, name)

    def result(task: str, value: float, metric: str, label: str, task_name: str | None = None) -> EvalResult:
        return EvalResult(task_type=task, task_name=task_name, dataset_type=dataset_id, dataset_name=name,
                          metric_type=metric, metric_value=round(value, 4), metric_name=label)

    results = [result("image-classification", m["task_accuracy"], "accuracy", "Task accuracy (test split)")] \
        if "task_accuracy" in m else []
    top = metrics_reading(m)
    task = "Membership inference test (aMINT verdict: trace head)" if top == "amint" else \
        "Membership inference test (combined reading, legacy)"
    results += [result("membership-inference", m[k], k, label, task) for k, label in _METRIC_NAMES.items() if k in m]
    fp = m.get("fingerprint") or {}
    results += [result("membership-inference", fp[k], f"fingerprint_{k}", f"Fingerprint: {label}",
                       "Training-index lookup (fingerprint: hashed memories, reads the image not the model)")
                for k, label in _METRIC_NAMES.items() if k in fp]
    data = ModelCardData(
        library_name="amint", license="mit", pipeline_tag="image-classification",
        tags=["membership-inference", "amint", "model-auditing", "image-classification", cfg.backbone],
        datasets=[dataset_id] if cfg.dataset else None,
        model_name=f"amint-{name}-{cfg.backbone}", eval_results=results or None,
    )
    return "---\n" + data.to_yaml() + "\n---\n"


def _metrics_table(m: dict[str, Any]) -> str:
    rows = ["| method | " + " | ".join(label for _, label in METRIC_COLUMNS) + " |",
            "|---" * (len(METRIC_COLUMNS) + 1) + "|"]
    for name, r in method_rows(m):
        shown = f"**{name}**" if r is m or r is m.get("fingerprint") else name
        rows.append(f"| {shown} | " + " | ".join(_fmt(r.get(k)) for k, _ in METRIC_COLUMNS) + " |")
    return "\n".join(rows)


def dataset_name(dataset: str) -> str:
    """``imagefolder:/tmp/upload/shapes`` -> ``shapes``: cards and the app never show a local path."""
    if dataset.startswith("imagefolder:"):
        return dataset.rstrip("/").rsplit("/", 1)[-1].split(":", 1)[-1] or "custom data"
    return dataset or "custom data"


def _recipe_words(tc: dict) -> str:
    """One training run's recipe in a line: mode, epochs, batch, optimiser, losses, what it did to its images."""
    return (f"{tc.get('mode')}, {tc.get('epochs')} epochs, batch {tc.get('batch_size')} members + "
            f"{tc.get('batch_size')} externals, {tc.get('optimizer')} lr {tc.get('lr')} ({tc.get('schedule')}), "
            f"MINT loss weight {tc.get('mint_weight')} ({tc.get('loss_norm')} normalisation), {_data_words(tc)}")


def _built_on_trained(origin: dict | None, tc: dict) -> bool:
    """A pair built on a trained pair without a step of its own: its model is the source's, as trained."""
    return bool(origin) and not tc.get("epochs") and not tc.get("head_epochs")


def _origin_lines(origin: dict | None, tc: dict) -> list[str]:
    """Where a head-only run's backbone came from, so the card tells the whole training story."""
    lines = []
    if tc.get("head_epochs"):
        lines.append(f"- then {tc['head_epochs']} trace-head epochs on the frozen backbone")
    if "memory_views" in tc:
        lines.append(f"- memories written with each member and external as is and as {tc['memory_views']} random "
                     "edited views (JPEG, resampling, noise, brightness)")
    if origin and not _built_on_trained(origin, tc):
        oc = origin.get("training", {}).get("config", {})
        lines.append(f"- backbone from `{origin.get('source')}`: {_recipe_words(oc)}")
    return lines


def _mode_line(origin: dict | None, tc: dict) -> str:
    """The training line: this pair's own run, or, for a pair built on a trained one, the run that trained its model."""
    if _built_on_trained(origin, tc):
        oc = origin.get("training", {}).get("config", {})
        what = "model and trace head" if origin.get("trace_head") else "model"
        return f"- {what} from `{origin.get('source')}`, kept bit for bit as trained: {_recipe_words(oc)}"
    return f"- mode: {_recipe_words(tc)}"


def _data_words(tc: dict) -> str:
    """What the training did to its images, and the schedule's extras, in words (only what was on)."""
    words = []
    if tc.get("weight_decay") is not None:
        words.append(f"weight decay {tc['weight_decay']}")
    if tc.get("schedule") == "constant" and tc.get("cooldown_epochs"):
        words.append(f"the last {tc['cooldown_epochs']} epochs cool down to 0")
    if tc.get("ema_epochs"):
        words.append(f"the weights kept are a running average of the trained ones (time constant {tc['ema_epochs']:g} "
                     "epochs)")
    if tc.get("augment"):
        words.append("moves and flips for both losses")
    elif tc.get("task_augment"):
        words.append("moves and flips for the task loss only (the membership loss reads the images as they are)")
    else:
        words.append("no augmentation")
    if tc.get("edit_views"):
        words.append(f"{tc['edit_views']} edited view(s) of each image, members' views as members, externals' as "
                     "non-members")
    return ", ".join(words)


def _head_lines(cfg: PairConfig) -> list[str]:
    head = cfg.head
    lines = []
    if head.get("trace"):
        trace = head["trace"]
        pooling = "global max-pooling" if trace.get("pool") == "max" else "global average pooling"
        dropout = f" (dropout {trace['dropout']:g} in training)" if trace.get("dropout") else ""
        lines.append(f"- trace head (the paper's MINT model) on the taps: two convolutions of {trace['width']} "
                     f"channels per map, {pooling}, MLP {trace['hidden']}{dropout}, one logit")
    for name, m in head.get("memories", {}).items():
        moves = f", queried also moved by up to {m['shifts']} px and zoomed out to " \
                f"{', '.join(f'{z:.3f}' for z in m['zooms']) or 'no zoom'}" if m["shifts"] or m["zooms"] else ""
        lines.append(f"- memory `{name}`: {m['tables']} hash tables of {m['bits']} sign bits over {m['dims']} whitened "
                     f"components of the input ({m['pool']}x{m['pool']} pooled, border {m['border']} px left out){moves}; "
                     + ("one presence bit per bucket for members and one for externals" if m.get("externals", True)
                        else "one presence bit per bucket for members (the external tables were left out of this copy)"))
    for name, r in cfg.readings.items():
        weights = ", ".join(f"{k} {w:.3f}" for k, w in zip(r["evidence"], r["weights"]))
        lines.append(f"- {READING_TITLES.get(name, name)}: logistic (Platt) on {weights}, bias {r['bias']:.3f}, then an "
                     "isotonic map to the probability, fitted on the calibration split")
    return lines


def _edits_table(m: dict[str, Any], ref: dict[str, Any]) -> str:
    rows = ["| edit | accuracy | AUC | TPR @ 1% FPR | TPR @ 0.1% FPR | FPR at threshold | stated FPR bound | "
            "pixel reference AUC |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in m["edits"].items():
        bound = _fmt(r["fpr_bound"]) if "fpr_bound" in r else ""
        rows.append(f"| {name} | {_fmt(r['mint_accuracy'])} | {_fmt(r['auc'])} | {_fmt(r['tpr_at_1pct_fpr'])} | "
                    f"{_fmt(r['tpr_at_0_1pct_fpr'])} | {_fmt(r['fpr_at_threshold'])} | {bound} | "
                    f"{_fmt(ref.get(name, {}).get('auc'))} |")
    return "\n".join(rows)


def _fpr_sentence(reading: dict) -> str:
    """Where a reading's threshold and its false-positive rate come from, in words."""
    record = reading.get("fpr_record")
    threshold = reading["threshold"]
    if not record:
        stated = reading.get("threshold_fpr")
        return (f"Decision threshold {threshold:.4f}, fitted on a separate calibration split, where its "
                f"false-positive rate was {_fmt(stated)} (measured on the images it was fitted on).")
    return (f"Decision threshold {threshold:.4f}, fitted on the calibration members and half of the calibration "
            f"non-members. Its false-positive rate, measured on the other half ({record.get('n') or 'some'} never-seen "
            f"images per edit family, none fitted on), is at most {_fmt(reading.get('threshold_fpr'))}: the one-sided "
            f"{record['confidence']:.0%} Clopper-Pearson upper bound of the worst of {len(record['per_family'])} edit "
            f"families ({record['worst_family']}). Every decision and audit with this reading uses that bound.")


def _reading_paragraph(name: str, reading: dict, m: dict) -> str:
    """What a reading answers, how it was calibrated, and (the aMINT verdict) whether the trace carries signal."""
    auc = reading.get("cal_auc")
    if name == "amint":
        what = ("**aMINT verdict** (the trace head on the classifier's activation maps): does this model carry a "
                "trace of the image? The only reading that reads the model.")
        if auc is not None and auc < 0.6:
            what += (f" Calibration AUC {auc:.4f}: this model shows no detectable trace; its verdicts are close to "
                     "chance.")
        elif auc is not None:
            what += f" Calibration AUC {auc:.4f}."
    elif name == "fingerprint":
        what = ("**Fingerprint** (the hashed memories): is this image, or a re-encoding or small move of it, in the "
                "training index shipped with this pair? It reads the image, not the model: a control with an untrained "
                "backbone and the same memories gives the same answers."
                + (f" Calibration AUC {auc:.4f}." if auc is not None else ""))
    else:
        what = ("**Combined reading (legacy)**: one readout over the trace head and the memories, calibrated before "
                "this version separated them; which part decided is not told apart. Recalibrate the pair "
                "(`python -m amint calibrate`) for the two readings.")
    if m.get("auc") is not None:
        what += (f" On the scored images below: AUC {_fmt(m['auc'])}, TPR at 1% FPR {_fmt(m.get('tpr_at_1pct_fpr'))}"
                 + (" (at chance: 0.5 and 0.01 are what guessing gives)." if name == "amint" and auc is not None
                    and auc < 0.6 else "."))
    ece = (f" Expected calibration error on the scored images made like the calibration set "
           f"{_fmt(m.get('calibration_error'))} (exact copies alone {_fmt(m.get('calibration_error_exact'))}, edited "
           f"alone {_fmt(m.get('calibration_error_edited'))})." if m.get("calibration_error") is not None else "")
    return what + " " + _fpr_sentence(reading) + ece


def notes_of(card: str) -> str:
    """The free-text notes section of a rendered card ("" when it has none): kept when the card is rendered again."""
    start = card.find("\n## Notes\n")
    if start < 0:
        return ""
    end = card.find("\n## ", start + 1)
    return card[start + len("\n## Notes\n"): end if end >= 0 else len(card)].strip()


def render_model_card(cfg: PairConfig, notes: str = "") -> str:
    m = cfg.metrics
    t = cfg.training
    tc = t.get("config", {})
    names = [n for n in ("amint", "fingerprint", "combined") if n in cfg.readings]
    what = {"amint": "the **aMINT verdict**, from a trace head reading the classifier's activation maps (does the model "
                     "carry a trace of the image?)",
            "fingerprint": "the **fingerprint**, from hashed memories of the training images (is the image, or a "
                           "re-encoding of it, in the training index shipped with the pair? It does not read the model)",
            "combined": "one **combined reading** (legacy) over a trace head and hashed memories"}
    lines = [
        _front_matter(cfg),
        f"# aMINT pair: {cfg.backbone} on {dataset_name(cfg.dataset)}",
        "",
        "An audited image classifier with a MINT head (Active Membership Inference Test, ICCV 2025). "
        + (f"It gives {' and '.join(what[n] for n in names)}, each calibrated, with its own threshold and "
           "false-positive bound. " if names else "It is not calibrated yet. ")
        + "Load it with `amint.pair.AuditedPair.from_pretrained`.",
        "",
        "## Membership detection",
        "",
    ]
    if m:
        sources = {"amint": m if metrics_reading(m) == "amint" else {}, "fingerprint": m.get("fingerprint") or {},
                   "combined": m if metrics_reading(m) == "combined" else {}}
        lines += [
            f"Evaluation: {m.get('n_members')} scored members (held out from calibration only) against "
            f"{m.get('n_nonmembers')} images from the official test split (never seen by the model, never written into "
            "the memories).",
            "",
            *[p for n in names for p in (_reading_paragraph(n, cfg.readings[n], sources[n]), "")],
            _metrics_table(m),
            "",
            f"Audited task accuracy on the full test split: **{_fmt(m.get('task_accuracy'))}**.",
            "",
            "Baselines are classic threshold attacks on this pair's own classifier outputs, thresholds fitted on the "
            "same calibration split.",
            "",
        ]
        ref = m.get("references", {}).get("pixel_nearest_member", {})
        for n in names:
            if sources[n].get("edits"):
                lines += [f"### Edited copies: {READING_TITLES[n]}", "",
                          "Members and never-seen images edited alike (`amint.edits`), verdicts at this reading's own "
                          "threshold. The pixel reference (nearest member in raw pixels) needs the member images in "
                          "hand: a yardstick, not something a published pair could do.", "",
                          _edits_table(sources[n], ref), ""]
    else:
        lines += ["Not evaluated yet.", ""]
    lines += [
        "## Architecture",
        "",
        f"- backbone: `{cfg.backbone}` {json.dumps(cfg.backbone_kwargs) if cfg.backbone_kwargs else ''}, "
        f"input {cfg.in_chans}x{cfg.image_size}x{cfg.image_size}, {cfg.num_classes} classes",
        f"- taps ({cfg.setup}): {', '.join(f'`{t_}`' for t_ in cfg.taps)}",
        *_head_lines(cfg),
    ]
    if "parameters" in t:
        p = t["parameters"]
        lines.append(f"- parameters: backbone {p['backbone']:,}, MINT head {p['head']:,}")
    if tc:
        lines += [
            "",
            "## Training",
            "",
            _mode_line(t.get("init_from"), tc),
            f"- membership split (seed {cfg.split.get('seed')}): {cfg.split.get('n_members')} members, "
            f"{cfg.split.get('n_external')} externals, {cfg.split.get('n_calibration')} calibration non-members; "
            f"members digest `{cfg.split.get('members_sha256', '')[:16]}`",
            (f"- this pair: no training step of its own; memories written and readings fitted on {t.get('device')} "
             f"in {t.get('train_seconds')} s" if _built_on_trained(t.get("init_from"), tc)
             else f"- trained on {t.get('device')} in {t.get('train_seconds')} s"),
        ]
        lines += _origin_lines(t.get("init_from"), tc)
    if notes:
        lines += ["", "## Notes", "", notes]
    lines += ["", "## What publishing this pair reveals", "", reveal_words(cfg)]
    if cfg.left_out:
        lines += ["", f"This is a published copy without {LEAVE_OUT[cfg.left_out].split(':')[0]}: its readings, thresholds "
                      "and the numbers above were refitted on the same calibration split and scored images without "
                      "them (`amint.publish`). The owner's full pair keeps them."]
    lines += ["", "## Limits", ""] + [p for text in _limits(cfg) for p in (text, "")]
    return "\n".join(lines)


def _limits(cfg: PairConfig) -> list[str]:
    out = []
    if cfg.head.get("trace"):
        out.append("The aMINT verdict reads the classifier's activation maps through the trace head: it can only find "
                   "what training left in the model, and a trace head near chance (calibration AUC below 0.6) finds "
                   "nothing either way. A “member” verdict is a false alarm for some never-seen images: the "
                   "false-positive bound is stated with the threshold.")
    if cfg.head.get("memories"):
        out.append("The fingerprint depends on the hashed memories, which remember the training images as this model "
                   "receives them (sign bits of projections, no images). They recognise exact copies, re-encodings "
                   "(JPEG, resizing, noise, brightness) and small moves (shifts of up to the memory's alignment, slight "
                   "crops); larger crops, rotations, flips, or a different photo of the same object are not "
                   "recognised. The memories read the input, not the classifier's weights: the fingerprint says which "
                   "images are in the training index shipped with this pair, not what the classifier retained.")
    return out
