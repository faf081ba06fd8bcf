"""The model card carries the pair's own numbers, in Hub metadata the Hub can read."""

from __future__ import annotations

from huggingface_hub import ModelCard

from amint.card import render_model_card


def _front_matter(card: str) -> dict:
    return ModelCard(card).data.to_dict()  # read back as the Hub reads it


def test_card_metadata_and_table_carry_the_evaluated_numbers(tiny_pair):
    pair, folder = tiny_pair
    card = (folder / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "amint"
    mint = {m["type"]: m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert mint["auc"] == round(pair.config.metrics["auc"], 4)
    assert mint["accuracy"] == round(pair.config.metrics["task_accuracy"], 4)
    assert f"{pair.config.metrics['mint_accuracy']:.4f}" in card
    assert "loss attack" in card


def test_card_never_shows_a_local_path_for_uploaded_folders(tiny_pair):
    pair, _ = tiny_pair
    config = pair.config
    original = config.dataset
    try:
        config.dataset = "imagefolder:/tmp/uploads/abc123/shapes"
        card = render_model_card(config)
    finally:
        config.dataset = original
    assert "/tmp/uploads" not in card and "shapes" in card


def test_card_says_which_losses_saw_moved_images(tiny_pair):
    """A reader of the card must tell task-only augmentation (the membership loss reads images as they are) from
    augmentation of both losses, and see edited views when the recipe used them."""
    pair, _ = tiny_pair
    tc = pair.config.training["config"]
    original = dict(tc)
    try:
        tc.update(augment=False, task_augment=True, edit_views=0)
        task_only = render_model_card(pair.config)
        tc.update(augment=True, task_augment=False, edit_views=2)
        both = render_model_card(pair.config)
    finally:
        tc.clear()
        tc.update(original)
    assert "task loss only" in task_only and "edited view(s) of each image" not in task_only
    assert "for both losses" in both and "task loss only" not in both and "2 edited view(s)" in both


def test_card_says_when_the_weights_are_a_running_average(tiny_pair):
    pair, _ = tiny_pair
    tc = pair.config.training["config"]
    original = dict(tc)
    try:
        tc.update(ema_epochs=3.0)
        averaged = render_model_card(pair.config)
        tc.update(ema_epochs=0.0)
        plain = render_model_card(pair.config)
    finally:
        tc.clear()
        tc.update(original)
    assert "running average of the trained ones (time constant 3 epochs)" in averaged
    assert "running average" not in plain
