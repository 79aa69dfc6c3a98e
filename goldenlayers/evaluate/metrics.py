"""EasyEdit's editing metrics, teacher-forced and batched, and ``evaluate`` over a list of requests.

Every teacher-forced metric feeds ``prompt + answer`` (``TokenBatch``: the answer after one space)
and reads the argmax of the logits at the positions that predict an answer token, one forward pass
per batch and the vocabulary head only at those positions (``logits_at``):

    token accuracy(prompt, answer) = mean_j [ argmax logits(position before token j) == token j ]

- rewrite_accuracy: token accuracy of (prompt, target_new).
- rephrase_accuracy: the mean token accuracy over the request's rephrased prompts with target_new.
- portability: token accuracy on each portability (prompt, answer), mean over its prompts. With
  several aliases the rule is a parameter: "first" (EasyEdit's, the default: the first alias, which
  is ``answer``) or "best" (any alias counts: the best token accuracy over the aliases).
- locality: on each locality (prompt, answer), the fraction of answer positions where the edited
  model's argmax equals the unedited model's (``PreEditState``), mean over its prompts. Where the
  data gives no answer (``PromptAnswer.answer`` None), the answer is the unedited model's greedy
  continuation of the prompt (``MODEL_ANSWER_TOKENS`` tokens), generated once with the state.
- fluency (goldenlayers.evaluate.fluency): n-gram entropy of a continuation of the prompt, greedy
  (ours, the default) or sampled as EasyEdit does (``fluency_procedure="easyedit"``); higher is better.

Each request's value is None where its data has no such prompts; means are over the requests that
have a value. Positions come from ``TokenBatch``, so left and right padding give the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from goldenlayers.data.load import METRICS
from goldenlayers.data.records import EditRequest, PromptAnswer
from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate.fluency import fluency_scores, fluency_settings
from goldenlayers.models.handle import ModelHandle, greedy_continuations, logits_at
from goldenlayers.progress import track

logger = logging.getLogger(__name__)

TEACHER_FORCED = METRICS[:4]
OVERALL = "overall"  # per unit: the mean of its teacher-forced metrics (engine.cell)
# Which way every metric improves, declared once here and read everywhere else. Fluency is
# EasyEdit's n-gram entropy, which falls as generated text repeats itself (the failure it exists to
# catch), so higher is better; the paper's down arrow on FLC contradicts the measure it names.
HIGHER_IS_BETTER: dict[str, bool] = {"rewrite_accuracy": True, "rephrase_accuracy": True,
                                     "locality": True, "portability": True, "fluency": True,
                                     OVERALL: True}


def higher_is_better(metric: str) -> bool:
    """True when a larger value of ``metric`` is better (every metric here, and Overall): the
    direction the golden-layer picker (``engine.grid``) ranks it by."""
    if metric not in HIGHER_IS_BETTER:
        raise GoldenLayersError(f"unknown metric {metric!r}; known: {', '.join(HIGHER_IS_BETTER)}")
    return HIGHER_IS_BETTER[metric]

ALIAS_RULES = ("first", "best")
DEFAULT_METRICS = TEACHER_FORCED  # fluency generates 100 tokens per request: ask for it by name
MODEL_ANSWER_TOKENS = 8  # a locality answer the data lacks: this much of the model's own


@dataclass(frozen=True)
class RequestMetrics:
    """One request's metric values; None where the request's data does not support the metric."""

    case_id: str
    rewrite_accuracy: float | None = None
    rephrase_accuracy: float | None = None
    locality: float | None = None
    portability: float | None = None
    fluency: float | None = None

    def values(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in METRICS}


@dataclass(frozen=True)
class Evaluation:
    """Per-request values, their means, the metrics not computed, and how they were computed."""

    per_request: list[RequestMetrics]
    means: dict[str, float]
    skipped: tuple[str, ...]  # not asked, or no request has the data for it
    counts: dict[str, int] = field(default_factory=dict)  # requests behind each mean
    settings: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class PreEditState:
    """The unedited model's argmax tokens at each locality answer position, keyed by the request's
    locality prompts and answers (``locality_key``).

    ``tokens[locality_key(request)][k]`` holds the predictions for the request's k-th locality
    prompt. Compute it once per request before any edit, and pass it to every ``evaluate`` of every
    layer and editor. Keyed by content, not by case id: two data sets number their requests from
    the same ids, and a state keyed by id would hand one request another's predictions.
    """

    fingerprint: str  # the model's; a state from another model is refused
    tokens: dict[str, tuple[tuple[int, ...], ...]]
    # locality_key -> each locality pair's answer, the unedited model's where the data has none
    answers: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __contains__(self, request: EditRequest) -> bool:
        return locality_key(request) in self.tokens

    def merged(self, other: PreEditState) -> PreEditState:
        if other.fingerprint != self.fingerprint:
            raise GoldenLayersError("cannot merge pre-edit states of two different models")
        return PreEditState(self.fingerprint, {**self.tokens, **other.tokens},
                            {**self.answers, **other.answers})


@dataclass(frozen=True)
class _Item:
    """One teacher-forced sequence: which request and metric it serves, and what it feeds."""

    request: int
    metric: str
    group: int  # which rephrase / locality / portability prompt of the request
    prompt: str
    answer: str


def locality_key(request: EditRequest) -> str:
    """What the pre-edit predictions of ``request`` depend on: its locality prompts and answers."""
    pairs = [[pair.prompt, pair.answer] for pair in request.locality]
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


# --- the one forward pass per batch ------------------------------------------------------------

def token_accuracy(predicted: torch.Tensor, expected: torch.Tensor) -> float:
    """Fraction of positions where two (n,) token-id tensors agree."""
    if predicted.numel() == 0:
        raise GoldenLayersError("an answer has no tokens to score: is it empty?")
    if predicted.shape != expected.shape:
        raise GoldenLayersError(
            f"cannot compare {tuple(predicted.shape)} with {tuple(expected.shape)} tokens: "
            "was the pre-edit state computed with another tokenizer?")
    return (predicted == expected).float().mean().item()


@torch.no_grad()
def _argmax_at_answers(handle: ModelHandle, items: Sequence[_Item], batch_size: int,
                       padding_side: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(argmax ids, answer ids), both (n_answer_tokens,) on CPU, for each item in order."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].prompt) + len(items[i].answer))
    out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(items)
    starts = range(0, len(order), batch_size)
    for start in track(starts, "teacher-forced metrics", total=len(starts)):
        chunk = order[start: start + batch_size]
        batch = handle.batch([items[i].prompt for i in chunk], [items[i].answer for i in chunk],
                             padding_side=padding_side)
        mask = batch.predicts_target  # (B, T)
        predicted = logits_at(handle, batch, mask).argmax(-1).cpu()  # (N,), row-major over mask
        expected = batch.labels[mask].cpu()  # (N,)
        per_row = mask.sum(-1).tolist()
        for i, p, e in zip(chunk, predicted.split(per_row), expected.split(per_row)):
            out[i] = (p, e)
    return out  # type: ignore[return-value]


# --- which sequences each metric needs ----------------------------------------------------------

def _answers(pair: PromptAnswer, alias_rule: str) -> tuple[str, ...]:
    return pair.all_answers() if alias_rule == "best" else (pair.answer,)


def _locality_answers(request: EditRequest, model_answers: dict[str, tuple[str, ...]]
                      ) -> tuple[str, ...]:
    """Each locality pair's answer: the data's, else the unedited model's (``PreEditState``)."""
    if all(pair.answer is not None for pair in request.locality):
        return tuple(pair.answer for pair in request.locality)  # type: ignore[misc]
    if locality_key(request) not in model_answers:
        raise GoldenLayersError(f"case {request.case_id!r} has locality prompts without an answer "
                                "and the pre-edit state has none for them; run compute_pre_edit "
                                "on these requests before editing")
    return model_answers[locality_key(request)]


def _model_answers(handle: ModelHandle, requests: Sequence[EditRequest],
                   batch_size: int) -> dict[str, tuple[str, ...]]:
    """For each request with answerless locality pairs: every pair's answer, the unedited
    model's greedy continuation (stripped) where the data gives none. Call before any edit."""
    asked = [(r, k) for r, request in enumerate(requests)
             for k, pair in enumerate(request.locality) if pair.answer is None]
    if not asked:
        return {}
    texts = greedy_continuations(handle, [requests[r].locality[k].prompt for r, k in asked],
                                 MODEL_ANSWER_TOKENS, batch_size)
    given = {(r, k): text.strip() or text or handle.tokenizer.eos_token
             for (r, k), text in zip(asked, texts)}
    return {locality_key(requests[r]): tuple(given.get((r, k), pair.answer)
                                             for k, pair in enumerate(requests[r].locality))
            for r in sorted({r for r, _ in asked})}


def _items(requests: Sequence[EditRequest], metrics: Sequence[str], alias_rule: str,
           model_answers: dict[str, tuple[str, ...]] | None = None) -> list[_Item]:
    items = []
    for r, request in enumerate(requests):
        if "rewrite_accuracy" in metrics:
            items.append(_Item(r, "rewrite_accuracy", 0, request.prompt, request.target_new))
        if "rephrase_accuracy" in metrics:
            items += [_Item(r, "rephrase_accuracy", k, prompt, request.target_new)
                      for k, prompt in enumerate(request.rephrase_prompts)]
        if "locality" in metrics:
            answers = _locality_answers(request, model_answers or {})
            items += [_Item(r, "locality", k, pair.prompt, answer)
                      for k, (pair, answer) in enumerate(zip(request.locality, answers))]
        if "portability" in metrics:
            items += [_Item(r, "portability", k, pair.prompt, answer)
                      for k, pair in enumerate(request.portability)
                      for answer in _answers(pair, alias_rule)]
    return items


def _check_unique(requests: Sequence[EditRequest]) -> None:
    seen = set()
    for request in requests:
        if request.case_id in seen:
            raise GoldenLayersError(f"case_id {request.case_id!r} occurs twice; pre-edit state and "
                                    "per-request metrics are keyed by case_id")
        seen.add(request.case_id)


def compute_pre_edit(handle: ModelHandle, requests: Sequence[EditRequest], batch_size: int = 16,
                     *, padding_side: str = "right") -> PreEditState:
    """The unedited model's argmax tokens on every locality prompt + answer. Call before any edit.
    Requests of several data sets may share case ids: the state is keyed by locality content."""
    model_answers = _model_answers(handle, requests, batch_size)
    items = _items(requests, ("locality",), "first", model_answers)
    per_request: list[list[tuple[int, ...]]] = [[] for _ in requests]
    results = _argmax_at_answers(handle, items, batch_size, padding_side)
    for item, (predicted, _) in zip(items, results):
        per_request[item.request].append(tuple(predicted.tolist()))
    # requests with the same locality pairs get the same predictions, so either may fill the entry
    tokens = {locality_key(r): predicted for r, predicted in zip(requests, per_request)}
    return PreEditState(handle.fingerprint, {k: tuple(v) for k, v in tokens.items()},
                        model_answers)


# --- scoring --------------------------------------------------------------------------------------

def _reference(pre: PreEditState, request: EditRequest, group: int) -> torch.Tensor:
    reference = pre.tokens.get(locality_key(request))
    if reference is None or len(reference) != len(request.locality):
        raise GoldenLayersError(
            f"the pre-edit state has no locality predictions for case {request.case_id!r} "
            f"({len(request.locality)} locality prompts); run compute_pre_edit on these requests "
            "before editing")
    return torch.tensor(reference[group], dtype=torch.long)


def _scores(requests: Sequence[EditRequest], items: Sequence[_Item],
            results: Sequence[tuple[torch.Tensor, torch.Tensor]],
            pre: PreEditState | None) -> dict[tuple[int, str], float]:
    """Each (request, metric)'s value: best over a prompt's aliases, then mean over its prompts."""
    by_prompt: dict[tuple[int, str, int], list[float]] = {}
    for item, (predicted, expected) in zip(items, results):
        if item.metric == "locality":
            expected = _reference(pre, requests[item.request], item.group)  # type: ignore[arg-type]
        key = (item.request, item.metric, item.group)
        by_prompt.setdefault(key, []).append(token_accuracy(predicted, expected))
    by_metric: dict[tuple[int, str], list[float]] = {}
    for (request, metric, _), alias_scores in by_prompt.items():
        by_metric.setdefault((request, metric), []).append(max(alias_scores))
    return {key: sum(values) / len(values) for key, values in by_metric.items()}


def supports(metric: str, requests: Sequence[EditRequest]) -> bool:
    """Whether any of the requests has the data the metric needs."""
    need = {"rephrase_accuracy": "rephrase_prompts", "locality": "locality",
            "portability": "portability"}.get(metric)
    return any(getattr(r, need) for r in requests) if need else bool(requests)


def _resolve(metrics: Sequence[str] | None) -> tuple[str, ...]:
    if metrics is None:
        return DEFAULT_METRICS
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise GoldenLayersError(f"unknown metric {unknown[0]!r}; the metrics are "
                                f"{', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in metrics)


def _summary(per_request: list[RequestMetrics], settings: dict) -> Evaluation:
    means, counts = {}, {}
    for name in METRICS:
        values = [v for row in per_request if (v := getattr(row, name)) is not None]
        if values:
            means[name], counts[name] = sum(values) / len(values), len(values)
    skipped = tuple(name for name in METRICS if name not in means)
    return Evaluation(per_request, means, skipped, counts, settings)


def evaluate(handle: ModelHandle, requests: Sequence[EditRequest], pre: PreEditState | None = None,
             metrics: Sequence[str] | None = None, batch_size: int = 16, fluency_tokens: int = 100,
             *, alias_rule: str = "first", padding_side: str = "right",
             fluency_include_prompt: bool = True, fluency_procedure: str = "greedy",
             fluency_seed: int = 0) -> Evaluation:
    """Score the model as it is now on ``requests``.

    ``metrics=None`` asks for the four teacher-forced metrics; fluency (a generation of up to
    ``fluency_tokens`` tokens per request, by ``fluency_procedure``, see fluency.py) only when named. Metrics no request has data for are
    skipped. Locality compares with ``pre``; when ``pre`` is None it is computed here from the model
    as it is, which is right only before an edit (then locality is 1.0 by construction).
    """
    if alias_rule not in ALIAS_RULES:
        raise GoldenLayersError(f"alias_rule must be one of {', '.join(ALIAS_RULES)}, "
                                f"not {alias_rule!r}")
    _check_unique(requests)
    asked = _resolve(metrics)
    wanted = [m for m in asked if supports(m, requests)]
    settings: dict[str, object] = {"metrics_asked": asked, "alias_rule": alias_rule,
                                   "padding_side": padding_side, "batch_size": batch_size}
    if "locality" in wanted:
        if pre is None:
            logger.info("no pre-edit state given: computing it now, from the model as it is")
            pre = compute_pre_edit(handle, requests, batch_size, padding_side=padding_side)
            settings["pre_edit"] = "computed in evaluate (valid before an edit only)"
        elif pre.fingerprint != handle.fingerprint:
            raise GoldenLayersError("the pre-edit state was computed on another model "
                                    f"({pre.fingerprint}, this one is {handle.fingerprint})")
        else:
            settings["pre_edit"] = "given"
    items = _items(requests, wanted, alias_rule, pre.answers if pre is not None else None)
    results = _argmax_at_answers(handle, items, batch_size, padding_side)
    scores = _scores(requests, items, results, pre)
    if "fluency" in wanted:
        values = fluency_scores(handle, [r.prompt for r in requests], fluency_tokens, batch_size,
                                include_prompt=fluency_include_prompt,
                                procedure=fluency_procedure, seed=fluency_seed)
        scores.update(((r, "fluency"), value) for r, value in enumerate(values))
        settings.update(fluency_settings(fluency_procedure, fluency_tokens, fluency_include_prompt,
                                         fluency_seed))
    per_request = [RequestMetrics(request.case_id, **{m: scores.get((r, m)) for m in METRICS})
                   for r, request in enumerate(requests)]
    return _summary(per_request, settings)
