"""Plain-text helpers every layer may use (a leaf, like errors and progress): where a subject is.

data/ validates requests with it and models/tokens.py turns its character span into token
positions; it lives here because data and models may not import each other.
"""

from __future__ import annotations


def find_subject(prompt: str, subject: str, start: int = 0) -> tuple[int, int] | None:
    """Character span [begin, end) of the subject's first occurrence in ``prompt`` at or after
    ``start``: an exact match first, then a case-insensitive one; None when it does not occur."""
    begin = prompt.find(subject, start)
    if begin < 0:
        begin = prompt.lower().find(subject.lower(), start)
    if begin < 0:
        return None
    return begin, begin + len(subject)
