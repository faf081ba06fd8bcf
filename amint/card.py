"""The model card (README.md) of a pair: Hub metadata up top, then the numbers from its config."""

from __future__ import annotations

import json
from typing import Any

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


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _front_matter(cfg: PairConfig) -> str:
    m = cfg.metrics
    dataset_id = _DATASET_IDS.get(cfg.dataset, _dataset_name(cfg.dataset))
    results = []
    if "task_accuracy" in m:
        results.append({"task": {"type": "image-classification"},
                        "dataset": {"name": _dataset_name(cfg.dataset), "type": dataset_id},
                        "metrics": [{"type": "accuracy", "value": round(m["task_accuracy"], 4), "name": "Task accuracy (test split)"}]})
    mint = [{"type": k, "value": round(m[k], 4), "name": name} for k, name in _METRIC_NAMES.items() if k in m]
    if mint:
        results.append({"task": {"type": "membership-inference", "name": "Membership inference test"},
                        "dataset": {"name": _dataset_name(cfg.dataset), "type": dataset_id}, "metrics": mint})
    meta = {
        "library_name": "amint",
        "license": "mit",
        "tags": ["membership-inference", "amint", "model-auditing", "image-classification", cfg.backbone],
        "datasets": [dataset_id] if cfg.dataset else [],
        "pipeline_tag": "image-classification",
        "model-index": [{"name": f"amint-{_dataset_name(cfg.dataset)}-{cfg.backbone}", "results": results}],
    }
    # JSON is valid YAML, and it keeps the card free of a YAML dependency.
    return "---\n" + "\n".join(f"{k}: {json.dumps(v)}" for k, v in meta.items()) + "\n---\n"


def _metrics_table(m: dict[str, Any]) -> str:
    rows = ["| method | accuracy | AUC | TPR @ 1% FPR | TPR @ 0.1% FPR |", "|---|---|---|---|---|"]
    rows.append(f"| **aMINT (this pair)** | {_fmt(m.get('mint_accuracy'))} | {_fmt(m.get('auc'))} | "
                f"{_fmt(m.get('tpr_at_1pct_fpr'))} | {_fmt(m.get('tpr_at_0_1pct_fpr'))} |")
    for name, b in m.get("baselines", {}).items():
        rows.append(f"| {name.replace('_', ' ')} | {_fmt(b.get('mint_accuracy'))} | {_fmt(b.get('auc'))} | "
                    f"{_fmt(b.get('tpr_at_1pct_fpr'))} | {_fmt(b.get('tpr_at_0_1pct_fpr'))} |")
    return "\n".join(rows)


def _dataset_name(dataset: str) -> str:
    """``imagefolder:/tmp/upload/shapes`` -> ``shapes``: a card should not leak a local path."""
    if dataset.startswith("imagefolder:"):
        return dataset.rstrip("/").rsplit("/", 1)[-1].split(":", 1)[-1] or "custom data"
    return dataset or "custom data"


def _origin_lines(origin: dict | None, tc: dict) -> list[str]:
    """Where a head-only run's backbone came from, so the card tells the whole training story."""
    lines = []
    if tc.get("head_epochs"):
        lines.append(f"- then {tc['head_epochs']} head-only epochs on the frozen backbone")
    if origin:
        oc = origin.get("training", {}).get("config", {})
        lines.append(f"- backbone from `{origin.get('source')}`: {oc.get('mode')} training, {oc.get('epochs')} epochs, "
                     f"{oc.get('optimizer')} lr {oc.get('lr')} ({oc.get('schedule')}), MINT loss weight "
                     f"{oc.get('mint_weight')}, head {oc.get('head_activation')} during that stage")
    return lines


def render_model_card(cfg: PairConfig, notes: str = "") -> str:
    m = cfg.metrics
    t = cfg.training
    tc = t.get("config", {})
    lines = [
        _front_matter(cfg),
        f"# aMINT pair: {cfg.backbone} on {_dataset_name(cfg.dataset)}",
        "",
        "An audited image classifier trained jointly with a MINT head (Active Membership Inference Test, "
        "ICCV 2025) that reads its activation maps and outputs the probability that an image was in its "
        "training set. Load it with `amint.pair.AuditedPair.from_pretrained`.",
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
            "Baselines are classic threshold attacks on this pair's own classifier outputs, thresholds fitted on the "
            "same calibration split.",
            "",
        ]
    else:
        lines += ["Not evaluated yet.", ""]
    lines += [
        "## Architecture",
        "",
        f"- backbone: `{cfg.backbone}` {json.dumps(cfg.backbone_kwargs) if cfg.backbone_kwargs else ''}, "
        f"input {cfg.in_chans}x{cfg.image_size}x{cfg.image_size}, {cfg.num_classes} classes",
        f"- taps ({cfg.setup}): {', '.join(f'`{t_}`' for t_ in cfg.taps)}",
        f"- MINT head: {json.dumps(cfg.head)}",
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
    lines += [
        "",
        "## Limits",
        "",
        "The verdict says whether this particular model was trained on an image, judged by a head that memorised "
        "the model's activations of its training images. It does not transfer to other models, and edited copies "
        "of a training image (crops, recompression, resizing) can score lower than the original; "
        "benchmarks/robustness.py measures how much.",
        "",
    ]
    return "\n".join(lines)
