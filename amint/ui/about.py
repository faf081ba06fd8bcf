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
classifier being audited is built **together with** a *membership detector*, on purpose, by the model
builder, so that the model can be audited later. The detector here has two parts:

- a small network that looks at the classifier's internal activity (the activation maps shown in the
  Verify tab), trained together with the classifier: the paper's idea;
- a compact **memory of fingerprints** of the training images, taken as the model saw them. It keeps
  no copy of any image, only short codes, and it is built to recognise an image again after it has been
  re-saved as JPEG, enlarged, screenshotted or moved by a pixel or two.

A calibrated score combines the two. On the pair shipped with this demo the memory does nearly all the
work; the first part stays close to guessing (the Model tab shows both).

## How to read a verdict

- **Member probability**: the detector's score between 0% and 100%. Higher means it looks more like a
  training image.
- **Member / Not a member**: the score compared with a threshold. The threshold was set on images kept
  aside for that purpose, not on the images used to measure the detector's accuracy.
- **False-positive rate**: how often an image the model **never saw** is still called a member. The
  rate shown is an upper bound, measured on never-seen images that were kept aside and not used to set
  the threshold, for each kind of edit (the worst kind is shown). If it is 5%, at most about 1 in 20
  unseen images is flagged by mistake. So a single “Member” verdict is strong evidence, not proof.
- **Auditing a set** (Audit tab) is more reliable than one image: if far more images are flagged than
  that rate explains, the *p-value* is small. A p-value below 0.001 means such a result would almost
  never happen by chance if none of the images had been used. Identical images count once.

## Limits, honestly

- It detects **this model's own** training data, nothing more. It says nothing about other models,
  even ones trained on the same data.
- It works because the detector was **built in on purpose** when the model was trained. Classic attacks
  on an ordinary model do little better than guessing: on the shipped pair they are right 53-55% of the
  time, where guessing gives 50%.
- **Edited copies** that are re-saved, enlarged, screenshotted, brightened or shifted by a pixel or two
  are recognised. Larger crops, rotations, mirror images, filters, or another photo of the same object
  are not: a “Not a member” verdict on such an image is weak evidence.
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
