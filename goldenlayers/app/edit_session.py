"""The edit command's work, as an API: edit requests in place and say how it went.

Before and after the edit: each prompt's greedy continuation (does it now start with target_new?)
and the evaluation metrics of goldenlayers.evaluate (rewrite, rephrase, locality, portability)
with the locality reference taken before the edit. Requests are edited in sequence (ROME, R-ROME)
or as one batch (EMMET, MEMIT), as the editor does it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goldenlayers.data.records import EditRequest
from goldenlayers.editing.base import EditResult, Editor
from goldenlayers.editing.restore import Snapshot, snapshot
from goldenlayers.evaluate import compute_pre_edit, evaluate
from goldenlayers.models.handle import ModelHandle, greedy_continuations, weights_digest

log = logging.getLogger(__name__)

ANSWER_TOKENS = 8


@dataclass(frozen=True)
class RequestOutcome:
    case_id: str
    prompt: str
    subject: str
    target_new: str
    answer_before: str
    answer_after: str
    metrics_before: dict[str, float | None] = field(default_factory=dict)
    metrics_after: dict[str, float | None] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """The greedy continuation now starts with the new target."""
        return starts_with_target(self.answer_after, self.target_new)


@dataclass
class EditSession:
    result: EditResult
    layer: int
    outcomes: list[RequestOutcome]
    means_before: dict[str, float]
    means_after: dict[str, float]
    original: Snapshot  # the touched weights before the edit (for patches)
    weights_digest_before: str  # models.handle.weights_digest: the weights as they were

    @property
    def seconds_per_edit(self) -> float:
        return self.result.seconds / max(len(self.outcomes), 1)

    def to_dict(self) -> dict[str, Any]:
        edits = {e["case_id"]: e for e in self.result.summary()["requests"]}
        return {
            "editor": self.result.editor, "layer": self.layer, "layers": list(self.result.layers),
            "model": self.result.model_name, "fingerprint": self.result.model_fingerprint,
            "seconds_per_edit": self.seconds_per_edit, "seconds": self.result.seconds,
            "success_rate": sum(o.success for o in self.outcomes) / max(len(self.outcomes), 1),
            "metrics_before": self.means_before, "metrics_after": self.means_after,
            "config": self.result.config,
            "requests": [{"case_id": o.case_id, "prompt": o.prompt, "subject": o.subject,
                          "target_new": o.target_new, "answer_before": o.answer_before,
                          "answer_after": o.answer_after, "success": o.success,
                          "metrics_before": o.metrics_before, "metrics_after": o.metrics_after,
                          "edit": edits.get(o.case_id, {})} for o in self.outcomes],
        }


def starts_with_target(answer: str, target: str) -> bool:
    return answer.strip().startswith(target.strip())


def _metrics(handle: ModelHandle, requests: list[EditRequest], pre) -> tuple[dict, dict]:
    """(per case_id metric values, means) of the model as it is now."""
    evaluation = evaluate(handle, requests, pre=pre)
    per_request = {row.case_id: {k: v for k, v in row.values().items() if v is not None}
                   for row in evaluation.per_request}
    return per_request, dict(evaluation.means)


def edit_and_check(handle: ModelHandle, editor: Editor, requests: list[EditRequest],
                   layer: int) -> EditSession:
    """Edit ``requests`` at ``layer`` in place; greedy answers and metrics before and after."""
    prompts = [r.prompt for r in requests]
    pre = compute_pre_edit(handle, requests)
    before, means_before = _metrics(handle, requests, pre)
    answers_before = greedy_continuations(handle, prompts, ANSWER_TOKENS)
    original = snapshot(handle, editor.layers_for(handle, layer))
    weights_digest_before = weights_digest(handle)
    result = editor.apply(handle, requests, layer)
    answers_after = greedy_continuations(handle, prompts, ANSWER_TOKENS)
    after, means_after = _metrics(handle, requests, pre)
    outcomes = [RequestOutcome(r.case_id, r.prompt, r.subject, r.target_new, a, b,
                               before.get(r.case_id, {}), after.get(r.case_id, {}))
                for r, a, b in zip(requests, answers_before, answers_after)]
    return EditSession(result, layer, outcomes, means_before, means_after, original,
                       weights_digest_before)


def save_model(handle: ModelHandle, folder: str | Path, overwrite: bool = False) -> Path:
    """The model as it is now (edited), with its tokenizer, loadable by transformers.

    ``folder`` must be new, empty, an earlier goldenlayers output, or ``overwrite`` given
    (``files.outputs.check_output_folder``). The model is written beside it and moved in, so a
    crash or a full disk leaves the folder as it was (``WriteFailed`` names it and the reason);
    files goldenlayers did not write there are never removed.
    """
    from goldenlayers.files.atomic import named_write_errors
    from goldenlayers.files.outputs import check_output_folder, staged_folder

    folder = check_output_folder(folder, overwrite=overwrite)
    with named_write_errors(folder), staged_folder(folder) as staging:
        handle.model.save_pretrained(staging)
        handle.tokenizer.save_pretrained(staging)
    log.info("saved %s to %s", handle.name, folder)
    return folder
