"""No user-facing sentence claims that the model saw, trained on, remembers or decided, unless it is allowed.

The aMINT verdict reads the model (its trace head on the activation maps); the fingerprint reads the image. A sentence
that says the model saw, was trained on, remembers, memorised or decided something is true only of the aMINT reading
(or of the ground truth of a known split), so every such sentence in the strings people read (string literals of the
app, verify, explain, card and report modules, and README.md) must be listed, exactly, in tests/claims_allowlist.txt.
A new claim fails this test, which prints each offending sentence with its file and line, ready to fix or to allow.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWLIST = Path(__file__).with_name("claims_allowlist.txt")
SOURCES = sorted({*(ROOT / "amint" / "ui").glob("*.py"),
                  *(ROOT / "amint" / n for n in ("verify.py", "explain.py", "card.py", "report.py"))})
DOCUMENTS = [ROOT / "README.md"]

_WHO = r"(?:model|models|classifier|classifiers|network|networks)(?:'s)?"
_CLAIM = (r"(?:saw|seen|trained\s+on|trains\s+on|train\s+on|training\s+on|remember\w*|recall\w*"
          r"|decid\w*|memori[sz]\w*|knows?|learned\s+from|learnt\s+from)")
CLAIM_PATTERNS = [
    # "the model most likely saw this image", "the model shows no sign of having trained on", "the model decided"
    re.compile(rf"\b{_WHO}\b[^.;:!?]{{0,40}}?\b{_CLAIM}\b", re.IGNORECASE),
    # "seen by the model", "remembered by the classifier", "decided by the network"
    re.compile(rf"\b{_CLAIM}\b[^.;:!?]{{0,20}}?\bby\s+(?:the|this|its|a|that)\s+{_WHO}\b", re.IGNORECASE),
]


# --- what people read ------------------------------------------------------------------------------


def _text(node: ast.AST) -> str | None:
    """A string expression's text: a literal, an f-string (each placeholder as {}), or a + of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is not None or right is not None:
            return (left or "{}") + (right or "{}")
    return None


def python_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string expression in Python ``source`` that is not a docstring, outermost only."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    out, inside = [], set()
    for node in ast.walk(tree):  # breadth first: an outer expression comes before its parts
        if id(node) in docstrings or id(node) in inside:
            continue
        text = _text(node)
        if text is None:
            continue
        inside.update(id(n) for n in ast.walk(node))
        out.append((node.lineno, text))
    return out


def markdown_paragraphs(text: str) -> list[tuple[int, str]]:
    """(first line, text) of each paragraph of a Markdown document, front matter and code blocks left out."""
    lines = text.splitlines()
    start = 0
    if lines and lines[0].strip() == "---":
        start = next((i + 1 for i in range(1, len(lines)) if lines[i].strip() == "---"), 0)
    out, para, first, code = [], [], 0, False
    for i in range(start, len(lines)):
        line = lines[i]
        if line.lstrip().startswith("```"):
            code = not code
            continue
        if code:
            continue
        if not line.strip() or line.lstrip().startswith(("- ", "* ", "|", "#")):
            if para:
                out.append((first, " ".join(para)))
            para = [line.strip()] if line.strip() else []
            first = i + 1
            continue
        if not para:
            first = i + 1
        para.append(line.strip())
    if para:
        out.append((first, " ".join(para)))
    return out


def sentences(text: str) -> list[str]:
    """Sentences of a text, whitespace normalised: a Markdown block (paragraph, list item, heading, table row) is cut
    off from the next, and a sentence ends at . ! ? followed by a space and a capital (or a quote, bracket, mark)."""
    out = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*] |#|\|))", text):
        block = re.sub(r"\s+", " ", block).strip()
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z“\"(*`{])", block) if s.strip()]
    return out


def claims(text: str) -> list[str]:
    """The sentences of ``text`` that claim the model saw, trained on, remembers or decided something."""
    return [s for s in sentences(text) if any(p.search(s) for p in CLAIM_PATTERNS)]


def read_allowlist(path: Path = ALLOWLIST) -> set[str]:
    """The allowed sentences: one a line, exactly as ``claims`` gives them; '#' starts a comment line."""
    if not path.is_file():
        return set()
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")}


def found_claims(files: list[Path] = SOURCES, documents: list[Path] = DOCUMENTS) -> list[tuple[str, int, str]]:
    """(file, line, sentence) of every claim in the user-facing strings of ``files`` and the text of ``documents``."""
    out = []
    for path in files:
        for line, text in python_strings(path.read_text(encoding="utf-8")):
            out += [(_rel(path), line, s) for s in claims(text)]
    for path in documents:
        for line, text in markdown_paragraphs(path.read_text(encoding="utf-8")):
            out += [(_rel(path), line, s) for s in claims(text)]
    return out


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def unallowed(found: list[tuple[str, int, str]], allowed: set[str]) -> list[tuple[str, int, str]]:
    return [f for f in found if f[2] not in allowed]


def failure_message(bad: list[tuple[str, int, str]]) -> str:
    lines = [f"{len(bad)} user-facing sentence(s) claim that the model saw, trained on, remembers or decided. Say what "
             "the reading did instead (the trace head reads the model; the fingerprint reads the image), or, when the "
             f"sentence is true of the aMINT reading or of a known split's ground truth, add it, exactly as below, to "
             f"{_rel(ALLOWLIST)}:"]
    for file, line, sentence in bad:
        lines += [f"  {file}:{line}", f"    {sentence}"]
    return "\n".join(lines)


# --- the tests ---------------------------------------------------------------------------------------


def test_no_user_facing_sentence_claims_what_the_model_did_unless_allowed():
    bad = unallowed(found_claims(), read_allowlist())
    assert not bad, failure_message(bad)


def test_every_allowed_sentence_is_still_said():
    """An allowlist entry whose sentence is gone would let the same words back in unseen: remove it."""
    said = {s for _, _, s in found_claims()}
    stale = sorted(read_allowlist() - said)
    assert not stale, "tests/claims_allowlist.txt lists sentences no longer said (remove them):\n" + \
        "\n".join(f"  {s}" for s in stale)


@pytest.mark.parametrize("claim", [
    "Member: the model most likely saw this image during training.",
    "Not a member: the model shows no sign of having trained on this image.",
    "The classifier remembers this picture.",
    "The network decided it was a member.",
    "This image was seen by the model.",
    "The model memorised it.",
])
def test_a_fabricated_claim_fails(tmp_path, claim):
    """The check can fail: the old verdict words, and others like them, in a module and in a README."""
    module = tmp_path / "words.py"
    module.write_text(f'"""Docstrings are not checked: the model saw it."""\n\n'
                      f'def words(p):\n    return (f"Score {{p:.2f}}. " \n            "{claim}")\n')
    readme = tmp_path / "README.md"
    readme.write_text(f"---\ntitle: x\n---\n\n# Title\n\nA paragraph that\ngoes on. {claim} And more.\n")
    found = found_claims([module], [readme])
    assert [(f, s) for f, _, s in found] == [(str(module), claim), (str(readme), claim)]
    bad = unallowed(found, read_allowlist())
    assert len(bad) == 2
    message = failure_message(bad)
    assert claim in message and f"{module}:4" in message and f"{readme}:7" in message
    # Allowed exactly, it passes.
    assert not unallowed(found, {claim})


def test_true_sentences_that_name_the_readings_pass():
    for ok in ["The trace head finds no trace of this image in the model's activation maps.",
               "The fingerprint reads the image, not the model.",
               "Does this model carry a trace of the image?",
               "It decides nothing about the model."]:
        assert not claims(ok), ok
