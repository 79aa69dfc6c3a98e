"""Plain text for the editors' second-moment (covariance) statistics of MLP keys.

The bundled text is WikiText-2 (raw, test split; see samples/SOURCES.md). One text per non-empty
line; WikiText's section headings (" = Title = ") are left out, and its tokenisation artefacts
(" @-@ ", " , ", " 's") are undone so the model sees ordinary prose.
"""

from __future__ import annotations

import re
from pathlib import Path

from goldenlayers.errors import InputError

WIKITEXT = "wikitext-2-raw_wiki.test.raw"
HEADING = re.compile(r"^\s*(=\s*)+[^=]*?(\s*=)+\s*$")

# WikiText's tokenisation, undone (pairs applied in order).
DETOKENIZE = (
    (re.compile(r" @(.)@ "), r"\1"),                 # 1 @,@ 000 -> 1,000; well @-@ known -> well-known
    (re.compile(r" ([.,;:!?%)\]}])"), r"\1"),        # word , -> word,
    (re.compile(r"([(\[{$]) "), r"\1"),              # ( word -> (word
    (re.compile(r"n 't\b"), "n't"),                   # don 't -> don't
    (re.compile(r" ('s|'re|'ve|'m|'ll|'d)\b"), r"\1"),
)


def corpus_path() -> Path:
    from goldenlayers.data.load import samples_dir

    return samples_dir() / WIKITEXT


def detokenize(line: str) -> str:
    """WikiText's spaced-out punctuation back to ordinary text."""
    line = line.strip()
    for pattern, replacement in DETOKENIZE:
        line = pattern.sub(replacement, line)
    return line


def load_corpus_texts(limit: int | None = None, path: str | Path | None = None) -> list[str]:
    """Non-empty, non-heading lines of the bundled WikiText-2 text (or of ``path``, a UTF-8 text
    file with one text per line), detokenised, in file order; at most ``limit`` of them."""
    path = Path(path).expanduser() if path is not None else corpus_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read text corpus: {error}", source=str(path)) from error
    texts = []
    for line in lines:
        if limit is not None and len(texts) >= limit:
            break
        if line.strip() and not HEADING.match(line):
            texts.append(detokenize(line))
    if not texts:
        raise InputError("no text in the corpus (every line empty or a heading)", source=str(path))
    return texts
