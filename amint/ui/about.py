"""About tab: membership inference and this demo, for readers who are not machine-learning experts."""

from __future__ import annotations

import gradio as gr

ABOUT = """
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
classifier being audited is trained **together with** a small second network, the *membership
detector*, which looks at the classifier's internal activity (the activation maps shown in the Verify
tab) and learns to tell training images apart from other images. Training the two together makes the
classifier keep a detectable trace of its training data, on purpose. The model builder does this
so that the model can be audited later.

## How to read a verdict

- **Member probability**: the detector's score between 0% and 100%. Higher means it looks more like a
  training image.
- **Member / Not a member**: the score compared with a threshold. The threshold was set on images kept
  aside for that purpose, not on the images used to measure the detector's accuracy.
- **False-positive rate**: how often an image the model **never saw** is still called a member. If
  it is 5%, about 1 in 20 unseen images is flagged by mistake. So a single “Member” verdict is strong
  evidence, not proof.
- **Auditing a set** (Audit tab) is more reliable than one image: if far more images are flagged than
  the false-positive rate explains, the *p-value* is small. A p-value below 0.001 means such a result
  would almost never happen by chance if none of the images had been used.

## Limits, honestly

- It detects **this model's own** training data, nothing more. It says nothing about other models,
  even ones trained on the same data.
- It works because the trace was **built in on purpose** by joint training. A model trained the
  ordinary way carries a much weaker trace: in the paper, detectors added afterwards and classic
  attacks were right 51-79% of the time, where guessing gives 50%.
- **Edited copies** of a training image (cropped, resized, recompressed, filtered) may score lower
  than the original, so a “Not a member” verdict on an edited copy is weak evidence.
- Some images the model never saw **will** be flagged: that is the false-positive rate, shown with
  every verdict.
- The Model tab shows how well the detector did on held-out images, for this pair, with the numbers
  of classic attacks beside it for comparison.

## Learn more

- Paper: D. DeAlcala, A. Morales, J. Fierrez, G. Mancera, R. Tolosana, J. Ortega-Garcia,
  *Active Membership Inference Test (aMINT): Enhancing Model Auditability with Multi-Task Learning*,
  ICCV 2025 ([arXiv:2509.07879](https://arxiv.org/abs/2509.07879)).
- Every tab can also be called from code: see “Use via API” at the bottom of the page (on a computer).
"""


def build() -> None:
    gr.Markdown(ABOUT, elem_id="about-text", elem_classes=["prose-narrow"])
