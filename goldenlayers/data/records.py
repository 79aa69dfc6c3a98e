"""The one record every data set is read into."""

from __future__ import annotations

from dataclasses import dataclass, field

from goldenlayers.errors import InputError
from goldenlayers.text import find_subject


@dataclass(frozen=True)
class PromptAnswer:
    """A prompt and its expected answer; ``aliases`` holds every accepted answer, first = ``answer``.

    ``answer`` is None for a locality pair the data gives no ground truth for: the unedited
    model's own greedy answer stands in for it (``evaluate.compute_pre_edit``).

    ``kind`` is the data set's own label for the pair where it has one (KnowEdit's
    "Relation_Specificity", "Forgetfulness", "Reasoning", "Subject_Aliasing", ...), else "".
    """

    prompt: str
    answer: str | None
    aliases: tuple[str, ...] = ()
    kind: str = ""

    def all_answers(self) -> tuple[str | None, ...]:
        return self.aliases or (self.answer,)


@dataclass(frozen=True)
class EditRequest:
    """One fact to change: ``prompt`` mentions ``subject``; the model should answer ``target_new``.

    ``target_old`` is the data set's ground truth, or None where it has none (WikiRecent); then the
    model's own greedy answer stands in for it where a method needs one.
    """

    case_id: str
    prompt: str
    subject: str
    target_new: str
    target_old: str | None = None
    rephrase_prompts: tuple[str, ...] = ()
    locality: tuple[PromptAnswer, ...] = ()
    portability: tuple[PromptAnswer, ...] = ()
    source: str = ""
    target_old_aliases: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("prompt", "subject", "target_new"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InputError("must be a non-empty string", source=self.source or None,
                                 field=name)
        if self.subject_span() is None:
            raise InputError(f"subject {self.subject!r} does not occur in prompt {self.prompt!r}",
                             source=self.source or None, field="subject")

    def subject_span(self) -> tuple[int, int] | None:
        """Character span of the subject in the prompt (first occurrence; case-insensitive fallback)."""
        return find_subject(self.prompt, self.subject)
