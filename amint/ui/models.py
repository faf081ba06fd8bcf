"""Model tab: the selected pair's model card, its numbers, ROC curve, training curves and settings."""

from __future__ import annotations

import json
import math
from typing import Any

import gradio as gr
import pandas as pd

from amint.card import METRIC_COLUMNS, READING_TITLES, method_rows

from .common import Selector, get_pair

METRIC_HEADERS = ["method", *(label for _, label in METRIC_COLUMNS)]
_SETTINGS = ["dataset", "backbone", "backbone_kwargs", "setup", "mode", "epochs", "batch_size", "optimizer", "lr",
             "weight_decay", "schedule", "cooldown_epochs", "ema_epochs", "mint_weight", "head", "head_epochs",
             "memory_views", "n_members", "n_external", "n_calibration", "augment", "task_augment", "edit_views", "seed"]


def _num(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) and math.isfinite(v) else ("" if v is None else v)


def metrics_table(m: dict) -> pd.DataFrame:
    """Each reading and the baseline attacks, on the scored members (held out from calibration only) and the
    test-split non-members."""
    rows = [[name, *(_num(r.get(k)) for k, _ in METRIC_COLUMNS)] for name, r in method_rows(m)]
    return pd.DataFrame(rows, columns=METRIC_HEADERS)


def strip_front_matter(card: str) -> str:
    if card.startswith("---"):
        end = card.find("\n---", 3)
        if end != -1:
            return card[end + 4:].lstrip("\n")
    return card


def settings_table(config) -> pd.DataFrame:
    t = config.training or {}
    tc = t.get("config", {})
    rows = [[k, json.dumps(tc[k]) if isinstance(tc[k], (dict, list)) else str(tc[k])] for k in _SETTINGS if k in tc]
    for name, r in (config.readings or {}).items():
        title = READING_TITLES.get(name, name)
        fpr = r.get("threshold_fpr")
        rows += [[f"{title}: threshold", f"{r['threshold']:.4f}"],
                 [f"{title}: false-positive rate" + (" (upper bound, worst edit family)" if r.get("fpr_record")
                                                     else ""),
                  "" if fpr is None else f"{fpr:.4f}"]]
        if r.get("cal_auc") is not None:
            rows.append([f"{title}: calibration AUC", f"{r['cal_auc']:.4f}"])
    rows.append(["taps", ", ".join(config.taps)])
    if "device" in t:
        rows.append(["trained on", f"{t['device']} in {t.get('train_seconds')} s"])
    if "parameters" in t:
        p = t["parameters"]
        rows.append(["parameters", f"backbone {p.get('backbone', 0):,} · MINT head {p.get('head', 0):,}"])
    return pd.DataFrame(rows, columns=["setting", "value"])


def model_info(pair_name: str) -> tuple:
    """API ``model_info``: card, metrics table, ROC, training history and settings of a pair."""
    from amint import plots

    loaded = get_pair(pair_name)
    c = loaded.pair.config
    m = c.metrics or {}
    card = strip_front_matter(loaded.card) or "_This pair has no model card (README.md)._"
    history = (c.training or {}).get("history") or []
    task = f"Classification accuracy on the test split: **{m['task_accuracy']:.1%}**." if "task_accuracy" in m else ""
    return (
        card,
        metrics_table(m) if m else None,
        task,
        plots.plot_roc(m) if m.get("roc") else None,
        plots.plot_history(history) if history else None,
        settings_table(c),
    )


def _quiet_model_info(pair_name: str) -> tuple:
    """For automatic refreshes: a pair that cannot load is already reported by the selector."""
    try:
        return model_info(pair_name)
    except gr.Error:
        return tuple(gr.skip() for _ in range(6))


def build(sel: Selector) -> list:
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=300):
            metrics = gr.Dataframe(headers=METRIC_HEADERS,
                                   label="Membership detection: scored members (held out from calibration only) vs "
                                         "test images",
                                   interactive=False, elem_id="model-metrics")
            task = gr.Markdown()
            history = gr.Plot(label="Training curves", show_label=False, elem_id="model-history")
        with gr.Column(scale=2, min_width=300):
            roc = gr.Plot(label="ROC curve", show_label=False, elem_id="model-roc")
            settings = gr.Dataframe(headers=["setting", "value"], label="Training settings", interactive=False,
                                    wrap=True, max_height=360, elem_id="model-settings")
    with gr.Accordion("Model card", open=True):
        card = gr.Markdown(elem_id="model-card")
    outputs = [card, metrics, task, roc, history, settings]
    # Not needed in the page (the tab refreshes itself); it gives API clients a `model_info` endpoint.
    refresh = gr.Button("Show the selected pair", visible=False, elem_id="model-refresh")
    refresh.click(model_info, sel.dropdown, outputs, api_name="model_info")
    sel.dropdown.change(_quiet_model_info, sel.dropdown, outputs, api_visibility="private", show_progress="hidden")
    return outputs


def wire_refresh(trigger, sel: Selector, outputs: list) -> None:
    """Refresh when the tab is opened (the pair may have been loaded or trained meanwhile)."""
    trigger(_quiet_model_info, sel.dropdown, outputs, api_visibility="private", show_progress="hidden")
