"""What editors keep between edits of one model: context templates, key statistics, token batches.

An ``EditCache`` is an object an editor is given (or makes for itself), never a module global, so
two editors, two models or two tests never see each other's entries. Every key starts with the
model's fingerprint, which is fixed at load time, so in-place edits do not invalidate it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EditCache:
    templates: dict[tuple, tuple[str, ...]] = field(default_factory=dict)
    second_moments: dict[tuple, Any] = field(default_factory=dict)  # covariance.SecondMoment
    batches: dict[tuple, Any] = field(default_factory=dict)  # batches.RequestBatch
    max_batches: int = 4096  # request batches are small, but a long study sees many requests

    def remember_batch(self, key: tuple, value: Any) -> Any:
        if len(self.batches) >= self.max_batches:
            self.batches.pop(next(iter(self.batches)))  # the oldest entry
        self.batches[key] = value
        return value

    def clear(self) -> None:
        self.templates.clear()
        self.second_moments.clear()
        self.batches.clear()
