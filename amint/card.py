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


# The columns every metrics table shows (card, CLI, app), and its rows: this pair, then the baselines.
METRIC_COLUMNS = (("mint_accuracy", "accuracy"), ("auc", "AUC"), ("tpr_at_1pct_fpr", "TPR @ 1% FPR"),
                  ("tpr_at_0_1pct_fpr", "TPR @ 0.1% FPR"))


def method_rows(metrics: dict) -> list[tuple[str, dict]]:
    """(method name, its metrics): aMINT, then each baseline attack measured on the same split."""
    return [("aMINT (this pair)", metrics),
            *((name.replace("_", " "), b) for name, b in (metrics.get("baselines") or {}).items())]


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _front_matter(cfg: PairConfig) -> str:
    """Hub metadata through huggingface_hub's ModelCardData: tags, dataset and the evaluated numbers."""
    from huggingface_hub import EvalResult, ModelCardData

    m = cfg.metrics
    name = dataset_name(cfg.dataset)
    dataset_id = _DATASET_IDS.get(cfg.dataset, name)

    def result(task: str, key: str, metric: str, label: str, task_name: str | None = None) -> EvalResult:
        return EvalResult(task_type=task, task_name=task_name, dataset_type=dataset_id, dataset_name=name,
                          metric_type=metric, metric_value=round(m[key], 4), metric_name=label)

    results = [result("image-classification", "task_accuracy", "accuracy", "Task accuracy (test split)")] \
        if "task_accuracy" in m else []
    results += [result("membership-inference", k, k, label, "Membership inference test")
                for k, label in _METRIC_NAMES.items() if k in m]
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
    for i, (name, r) in enumerate(method_rows(m)):
        shown = f"**{name}**" if i == 0 else name
        rows.append(f"| {shown} | " + " | ".join(_fmt(r.get(k)) for k, _ in METRIC_COLUMNS) + " |")
    return "\n".join(rows)


def dataset_name(dataset: str) -> str:
    """``imagefolder:/tmp/upload/shapes`` -> ``shapes``: cards and the app never show a local path."""
    if dataset.startswith("imagefolder:"):
        return dataset.rstrip("/").rsplit("/", 1)[-1].split(":", 1)[-1] or "custom data"
    return dataset or "custom data"


def _origin_lines(origin: dict | None, tc: dict) -> list[str]:
    """Where a head-only run's backbone came from, so the card tells the whole training story."""
    lines = []
    if tc.get("head_epochs"):
        lines.append(f"- then {tc['head_epochs']} trace-head epochs on the frozen backbone")
    if "memory_views" in tc:
        lines.append(f"- memories written with each member and external as is and as {tc['memory_views']} random "
                     "edited views (JPEG, resampling, noise, brightness)")
    if origin:
        oc = origin.get("training", {}).get("config", {})
        lines.append(f"- backbone from `{origin.get('source')}`: {oc.get('mode')} training, {oc.get('epochs')} epochs, "
                     f"{oc.get('optimizer')} lr {oc.get('lr')} ({oc.get('schedule')}), MINT loss weight "
                     f"{oc.get('mint_weight')}")
    return lines


def _head_lines(cfg: PairConfig) -> list[str]:
    head = cfg.head
    lines = []
    if head.get("trace"):
        lines.append(f"- trace head (the paper's MINT model) on the taps: two convolutions of {head['trace']['width']} "
                     f"channels per map, global pooling, MLP {head['trace']['hidden']}, one logit")
    for name, m in head.get("memories", {}).items():
        moves = f", queried also moved by up to {m['shifts']} px and zoomed out to " \
                f"{', '.join(f'{z:.3f}' for z in m['zooms']) or 'no zoom'}" if m["shifts"] or m["zooms"] else ""
        lines.append(f"- memory `{name}`: {m['tables']} hash tables of {m['bits']} sign bits over {m['dims']} whitened "
                     f"components of the input ({m['pool']}x{m['pool']} pooled, border {m['border']} px left out){moves}; "
                     + ("one presence bit per bucket for members and one for externals" if m.get("externals", True)
                        else "one presence bit per bucket for members (the external tables were left out of this copy)"))
    readout = cfg.calibration.get("readout")
    if readout:
        lines.append("- readout (logistic, fitted on the calibration split): "
                     + ", ".join(f"{k} {v:.3f}" for k, v in readout.items()))
    return lines


def _edits_table(m: dict[str, Any]) -> str:
    ref = m.get("references", {}).get("pixel_nearest_member", {})
    rows = ["| edit | accuracy | AUC | TPR @ 1% FPR | TPR @ 0.1% FPR | FPR at threshold | pixel reference AUC |",
            "|---|---|---|---|---|---|---|"]
    for name, r in m["edits"].items():
        rows.append(f"| {name} | {_fmt(r['mint_accuracy'])} | {_fmt(r['auc'])} | {_fmt(r['tpr_at_1pct_fpr'])} | "
                    f"{_fmt(r['tpr_at_0_1pct_fpr'])} | {_fmt(r['fpr_at_threshold'])} | {_fmt(ref.get(name, {}).get('auc'))} |")
    return "\n".join(rows)


def render_model_card(cfg: PairConfig, notes: str = "") -> str:
    m = cfg.metrics
    t = cfg.training
    tc = t.get("config", {})
    lines = [
        _front_matter(cfg),
        f"# aMINT pair: {cfg.backbone} on {dataset_name(cfg.dataset)}",
        "",
        "An audited image classifier with a MINT head (Active Membership Inference Test, ICCV 2025) that "
        "outputs the probability that an image was in its training set: a trace head reading the "
        "classifier's activation maps and hashed memories of its training images, combined by a calibrated "
        "readout. Load it with `amint.pair.AuditedPair.from_pretrained`.",
        "",
        "## Membership detection",
        "",
    ]
    if m:
        lines += [
            f"Held-out evaluation: {m.get('n_members')} training members (never used for calibration) against "
            f"{m.get('n_nonmembers')} images from the official test split (never seen by either head). "
            f"Decision threshold {cfg.threshold:.4f}, fitted on a separate calibration split, where its false-positive "
            f"rate was {_fmt(cfg.threshold_fpr)}.",
            "",
            _metrics_table(m),
            "",
            f"Audited task accuracy on the full test split: **{_fmt(m.get('task_accuracy'))}**.",
            "",
            f"The member probability is calibrated (isotonic, equal priors) on calibration images as is and once "
            f"randomly edited; expected calibration error on held-out images made the same way "
            f"{_fmt(m.get('calibration_error'))} (exact copies alone {_fmt(m.get('calibration_error_exact'))}, "
            f"edited alone {_fmt(m.get('calibration_error_edited'))}).",
            "",
            "Baselines are classic threshold attacks on this pair's own classifier outputs, thresholds fitted on the "
            "same calibration split.",
            "",
        ]
        if "edits" in m:
            lines += ["### Edited copies", "",
                      "Members and never-seen images edited alike (`amint.edits`), verdicts at this pair's own threshold. "
                      "The pixel reference (nearest member in raw pixels) needs the member images in hand: a "
                      "yardstick, not something a published pair could do.", "", _edits_table(m), ""]
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
            f"- mode: {tc.get('mode')}, {tc.get('epochs')} epochs, batch {tc.get('batch_size')} members + "
            f"{tc.get('batch_size')} externals, {tc.get('optimizer')} lr {tc.get('lr')} ({tc.get('schedule')}), "
            f"MINT loss weight {tc.get('mint_weight')} ({tc.get('loss_norm')} normalisation), augment {tc.get('augment')}",
            f"- membership split (seed {cfg.split.get('seed')}): {cfg.split.get('n_members')} members, "
            f"{cfg.split.get('n_external')} externals, {cfg.split.get('n_calibration')} calibration non-members; "
            f"members digest `{cfg.split.get('members_sha256', '')[:16]}`",
            f"- trained on {t.get('device')} in {t.get('train_seconds')} s",
        ]
        lines += _origin_lines(t.get("init_from"), tc)
    if notes:
        lines += ["", "## Notes", "", notes]
    lines += ["", "## What publishing this pair reveals", "", reveal_words(cfg)]
    if cfg.left_out:
        lines += ["", f"This is a published copy without {LEAVE_OUT[cfg.left_out].split(':')[0]}: its readout, threshold "
                      "and the numbers above were refitted on the same calibration split and held-out data without "
                      "them (`amint.publish`). The owner's full pair keeps them."]
    lines += [
        "",
        "## Limits",
        "",
        _limits(cfg),
        "",
    ]
    return "\n".join(lines)


def _limits(cfg: PairConfig) -> str:
    if not cfg.head.get("memories"):
        return ("What the verdict depends on: the trace head alone, which reads the classifier's activation maps; "
                "this pair carries no hashed memories. Read its numbers above before trusting a verdict. Some "
                "never-seen images are flagged: the false-positive rate is stated with the threshold.")
    return ("What the verdict depends on: mostly on the hashed memories, which remember the training images as this "
            "model receives them (sign bits of projections, no images). They recognise exact copies, re-encodings "
            "(JPEG, resizing, noise, brightness) and small moves (shifts of up to the memory's alignment, slight "
            "crops); larger crops, rotations, flips, or a different photo of the same object are not recognised. "
            "Because the memories read the input rather than a trace in the classifier's weights, the verdict says "
            "which images were used to train this pair, not what the classifier itself retained; see the controls "
            "in the notes. Some never-seen images are flagged: the false-positive rate is stated with the threshold.")
