"""One small parser per benchmark format: a raw JSON record in, one `EditRequest` out.

Each parser reads only the fields its format has (see ../shared/data/README.md) and names the
file's own field when something is wrong, by raising `RecordError(field, message)`; the loader adds
the file and the record index. Alias lists keep every alias; the first one is the answer.
A locality or portability pair whose answer list is empty (a few KnowEdit records carry ``[[]]``)
cannot be scored: it is left out and counted in ``notes``, never dropped silently. A locality pair
whose ground truth is null (or whose ``metric`` is ``pre_post_consistency``) is kept with no answer:
it is measured against the unedited model's own greedy answer (``evaluate.compute_pre_edit``), and
counted under ``MODEL_ANSWER_NOTE``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from goldenlayers.data.records import EditRequest, PromptAnswer
from goldenlayers.text import find_subject

Record = Mapping[str, Any]
Parser = Callable[[Record, str, str, Counter], EditRequest]

NQ_PREFIX = "nq question:"
CONSISTENCY_METRIC = "pre_post_consistency"  # a locality pair scored against the model's own answer
MODEL_ANSWER_NOTE = ("locality pairs without a ground truth: measured against the unedited "
                     "model's own greedy answer")


class RecordError(Exception):
    """A problem in one field of one record; the loader turns it into an InputError with the file."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


# --- field readers -------------------------------------------------------------------------------

def text(record: Record, key: str, where: str | None = None) -> str:
    """A required non-empty string field."""
    where = where or key
    if key not in record:
        raise RecordError(where, "missing field")
    value = record[key]
    if not isinstance(value, str) or not value.strip():
        raise RecordError(where, f"must be a non-empty string, got {value!r}")
    return value


def own_case_id(record: Record, key: str, default: str) -> str:
    """The record's own id (a non-empty string, or a whole number), else ``default``. Results are
    keyed by it, so a list, an object, true/false or NaN is an error, not its printed form."""
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value):  # an empty CSV cell too
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise RecordError(key, f"must be a string or a whole number, got {value!r}")
    return str(value)


def optional_text(record: Record, key: str) -> str | None:
    return text(record, key) if record.get(key) is not None else None


def mapping(record: Record, key: str, where: str | None = None) -> Record:
    value = record.get(key)
    if not isinstance(value, Mapping):
        raise RecordError(where or key, "missing field" if key not in record
                          else f"must be an object, got {type(value).__name__}")
    return value


def answers(value: Any, where: str) -> tuple[str, ...]:
    """Every alias in ``value`` (a string, a list of strings or a list of alias lists), in order,
    without repeats. Empty when the data set gives no answer at all."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise RecordError(where, f"must be a string or a list of strings, got {type(value).__name__}")
    flat: list[str] = []
    for item in items:
        group = [item] if isinstance(item, str) else item  # one answer, or one answer's aliases
        if not isinstance(group, list) or not all(isinstance(alias, str) for alias in group):
            raise RecordError(where, f"answers must be strings or lists of strings, got {item!r}")
        flat += [alias for alias in group if alias.strip() and alias not in flat]
    return tuple(dict.fromkeys(flat))


def prompt_answer(prompt: str, value: Any, where: str, kind: str = "") -> PromptAnswer | None:
    aliases = answers(value, where)
    return PromptAnswer(prompt, aliases[0], aliases, kind) if aliases else None


def first_rephrase(record: Record, key: str, notes: Counter, required: bool = False) -> tuple[str, ...]:
    """A rephrase field: one prompt, or a list of prompts of which the first is scored (the others
    are counted in ``notes``). Empty when absent and not ``required``."""
    value = record.get(key)
    if not isinstance(value, list):
        found = text(record, key) if required or value is not None else None
        return (found,) if found else ()
    if not value and not required:
        return ()
    if not value:
        raise RecordError(key, "must be a non-empty string or list of strings, got []")
    for j, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise RecordError(f"{key}[{j}]", f"must be a non-empty string, got {item!r}")
    if len(value) > 1:
        notes[f"{key} prompts after the first, not scored"] += len(value) - 1
    return (value[0],)


def grouped_pairs(record: Record, key: str, notes: Counter) -> tuple[PromptAnswer, ...]:
    """KnowEdit's ``{kind: [{prompt, ground_truth}, ...]}`` blocks, or a plain list of
    ``{prompt, ground_truth}`` objects (an export's form), as prompt-answer pairs."""
    if record.get(key) is None:
        return ()
    block = record[key]
    groups = {"": block} if isinstance(block, list) else dict(mapping(record, key))
    pairs = []
    for kind, items in groups.items():
        if not isinstance(items, list):
            raise RecordError(f"{key}.{kind}", "must be a list of {prompt, ground_truth} objects")
        for j, item in enumerate(items):
            where = f"{key}.{kind}[{j}]" if kind else f"{key}[{j}]"
            if not isinstance(item, Mapping):
                raise RecordError(where, "must be an object with prompt and ground_truth")
            prompt = text(item, "prompt", f"{where}.prompt")
            if key == "locality" and _model_answered(item):
                notes[MODEL_ANSWER_NOTE] += 1
                pairs.append(PromptAnswer(prompt, None, (), kind))
                continue
            if "ground_truth" not in item:
                raise RecordError(f"{where}.ground_truth", "missing field")
            pair = prompt_answer(prompt, item["ground_truth"], f"{where}.ground_truth", kind)
            if pair is None:
                notes[f"{key} pairs without an answer"] += 1
            else:
                pairs.append(pair)
    return tuple(pairs)


def _model_answered(item: Record) -> bool:
    """A locality pair measured as agreement with the unedited model: a null ground truth, or
    the ``pre_post_consistency`` metric."""
    return ("ground_truth" in item and item["ground_truth"] is None) or \
        item.get("metric") == CONSISTENCY_METRIC


def request(case_id: str, source: str, prompt: tuple[str, str], subject: tuple[str, str],
            target_new: str, **optional: Any) -> EditRequest:
    """Build the request once the subject is known to occur in the prompt.

    ``prompt`` and ``subject`` are (value, the file's field name) so errors name the file's field.
    """
    (prompt_text, prompt_key), (subject_text, subject_key) = prompt, subject
    if find_subject(prompt_text, subject_text) is None:
        raise RecordError(subject_key, f"subject {subject_text!r} does not occur in {prompt_key} "
                                       f"{prompt_text!r} (case-insensitive match tried too)")
    if optional.get("target_old") and not optional.get("target_old_aliases"):
        optional["target_old_aliases"] = (optional["target_old"],)
    return EditRequest(case_id=case_id, prompt=prompt_text, subject=subject_text,
                       target_new=target_new, source=source, **optional)


# --- the parsers ----------------------------------------------------------------------------------

def parse_counterfact(record: Record, case_id: str, source: str, notes: Counter) -> EditRequest:
    """EasyEdit/MEND flat CounterFact: one rephrase, one locality prompt with its true answer."""
    locality = ()
    if isinstance(record.get("locality_prompt"), list):
        locality = _listed_locality(record, notes)
    elif record.get("locality_prompt") is not None:
        locality = (PromptAnswer(text(record, "locality_prompt"),
                                 text(record, "locality_ground_truth")),)
    return request(own_case_id(record, "case_id", case_id), source,
                   (text(record, "prompt"), "prompt"), (text(record, "subject"), "subject"),
                   text(record, "target_new"), target_old=optional_text(record, "ground_truth"),
                   rephrase_prompts=first_rephrase(record, "rephrase_prompt", notes),
                   locality=locality)


def _listed_locality(record: Record, notes: Counter) -> tuple[PromptAnswer, ...]:
    """``locality_prompt`` as a list, with one answer for all or a list of one answer each."""
    prompts = _strings(record, "locality_prompt")
    truth = record.get("locality_ground_truth")
    if isinstance(truth, list) and len(truth) != len(prompts):
        raise RecordError("locality_ground_truth", f"has {len(truth)} answers for "
                                                   f"{len(prompts)} locality prompts")
    truths = truth if isinstance(truth, list) else [truth] * len(prompts)
    pairs = [prompt_answer(p, t, f"locality_ground_truth[{j}]")
             for j, (p, t) in enumerate(zip(prompts, truths))]
    notes["locality pairs without an answer"] += sum(pair is None for pair in pairs)
    return tuple(pair for pair in pairs if pair is not None)


def parse_counterfact_rome(record: Record, case_id: str, source: str, notes: Counter) -> EditRequest:
    """Original ROME counterfact.json: ``requested_rewrite.prompt`` has "{}" where the subject goes.

    paraphrase_prompts are rephrases; neighborhood_prompts are locality prompts whose answer is the
    true target. attribute_prompts and generation_prompts have no counterpart here and are not read.
    """
    rewrite = mapping(record, "requested_rewrite")
    template = text(rewrite, "prompt", "requested_rewrite.prompt")
    if "{}" not in template:
        raise RecordError("requested_rewrite.prompt", f"has no '{{}}' for the subject: {template!r}")
    subject = text(rewrite, "subject", "requested_rewrite.subject")
    target_new = text(mapping(rewrite, "target_new", "requested_rewrite.target_new"), "str",
                      "requested_rewrite.target_new.str")
    target_true = text(mapping(rewrite, "target_true", "requested_rewrite.target_true"), "str",
                       "requested_rewrite.target_true.str")
    rephrases = tuple(_strings(record, "paraphrase_prompts"))
    locality = tuple(PromptAnswer(p, target_true) for p in _strings(record, "neighborhood_prompts"))
    return request(own_case_id(record, "case_id", case_id), source,
                   (template.replace("{}", subject, 1), "requested_rewrite.prompt"),
                   (subject, "requested_rewrite.subject"), target_new, target_old=target_true,
                   rephrase_prompts=rephrases, locality=locality)


def parse_counterfact_qna(record: Record, case_id: str, source: str, notes: Counter) -> EditRequest:
    """counterfact_qna.json: the CounterFact prompt as ``question``, its new target as ``answer``,
    and the same fact asked as a question (``qna_question``), read as a rephrase. No old answer."""
    qna = optional_text(record, "qna_question")
    return request(own_case_id(record, "case_index", case_id), source,
                   (text(record, "question"), "question"), (text(record, "subject"), "subject"),
                   text(record, "answer"), rephrase_prompts=(qna,) if qna else ())


def parse_zsre_mend(record: Record, case_id: str, source: str, notes: Counter) -> EditRequest:
    """MEND/ROME zsRE: src -> alt; answers are the true answers; loc/loc_ans a Natural Questions
    locality pair (its "nq question: " prefix removed); portability {"New Question", "New Answer"}."""
    true_answers = answers(record["answers"], "answers") if "answers" in record else ()
    rephrase = optional_text(record, "rephrase")
    locality = ()
    if record.get("loc") is not None:
        question = text(record, "loc")
        if question.lower().startswith(NQ_PREFIX):
            question = question[len(NQ_PREFIX):].strip()
        locality = (PromptAnswer(question, text(record, "loc_ans")),)
    portability = ()
    if record.get("portability") is not None:
        block = mapping(record, "portability")
        portability = (PromptAnswer(text(block, "New Question", "portability.New Question"),
                                    text(block, "New Answer", "portability.New Answer")),)
    return request(case_id, source, (text(record, "src"), "src"),
                   (text(record, "subject"), "subject"), text(record, "alt"),
                   target_old=true_answers[0] if true_answers else None,
                   target_old_aliases=true_answers, rephrase_prompts=(rephrase,) if rephrase else (),
                   locality=locality, portability=portability)


def parse_knowedit(record: Record, case_id: str, source: str, notes: Counter, *,
                   needs_ground_truth: bool, needs_rephrase: bool) -> EditRequest:
    """KnowEdit ZsRE, WikiCounterfact and WikiRecent: one schema, differing in which fields exist."""
    true_answers: tuple[str, ...] = ()
    if needs_ground_truth or record.get("ground_truth") is not None:
        if "ground_truth" not in record:
            raise RecordError("ground_truth", "missing field")
        true_answers = answers(record["ground_truth"], "ground_truth")
        if not true_answers:
            raise RecordError("ground_truth", "has no answer")
    return request(own_case_id(record, "case_id", case_id), source,
                   (text(record, "prompt"), "prompt"),
                   (text(record, "subject"), "subject"), text(record, "target_new"),
                   target_old=true_answers[0] if true_answers else None,
                   target_old_aliases=true_answers,
                   rephrase_prompts=first_rephrase(record, "rephrase_prompt", notes, needs_rephrase),
                   locality=grouped_pairs(record, "locality", notes),
                   portability=grouped_pairs(record, "portability", notes))


def parse_wikibio(record: Record, case_id: str, source: str, notes: Counter) -> EditRequest:
    """KnowEdit WikiBio: the passage ``text`` is the prompt, ``labels`` the new continuation,
    ``concept`` the subject (it occurs in every text's opening "This is a Wikipedia passage about
    <concept>."). No old answer, no rephrase, no portability."""
    return request(case_id, source, (text(record, "text"), "text"),
                   (text(record, "concept"), "concept"), text(record, "labels"),
                   locality=grouped_pairs(record, "locality", notes))


def _strings(record: Record, key: str) -> list[str]:
    values = record.get(key) or []
    if not isinstance(values, list):
        raise RecordError(key, f"must be a list of strings, got {type(values).__name__}")
    for j, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise RecordError(f"{key}[{j}]", f"must be a non-empty string, got {value!r}")
    return values


# --- the registry: parser, and the keys that identify the format ----------------------------------

@dataclass(frozen=True)
class Format:
    name: str
    parse: Parser
    description: str
    signature: Callable[[Record], bool]


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("counterfact-rome", parse_counterfact_rome, "CounterFact, original ROME requested_rewrite",
           lambda r: "requested_rewrite" in r),
    Format("counterfact-qna", parse_counterfact_qna, "CounterFact questions (counterfact_qna.json)",
           lambda r: "qna_question" in r and "question" in r),
    Format("counterfact", parse_counterfact, "CounterFact, EasyEdit/MEND flat",
           lambda r: "locality_prompt" in r or ("case_id" in r and "prompt" in r
                                                and "locality" not in r and "portability" not in r)),
    Format("zsre-mend", parse_zsre_mend, "zsRE, MEND eval format (src/alt/answers/loc)",
           lambda r: "src" in r and "alt" in r),
    Format("wikibio", parse_wikibio, "KnowEdit WikiBio (text/labels/concept)",
           lambda r: "text" in r and "labels" in r and "concept" in r),
    Format("knowedit-zsre",
           partial(parse_knowedit, needs_ground_truth=True, needs_rephrase=True),
           "KnowEdit ZsRE", lambda r: "prompt" in r and "rephrase_prompt" in r),
    Format("wikicounterfact",
           partial(parse_knowedit, needs_ground_truth=True, needs_rephrase=False),
           "KnowEdit WikiCounterfact", lambda r: "prompt" in r and "ground_truth" in r),
    Format("wikirecent",
           partial(parse_knowedit, needs_ground_truth=False, needs_rephrase=False),
           "KnowEdit WikiRecent (no old answer)", lambda r: "prompt" in r and "target_new" in r),
)}


def format_of(record: Any) -> str | None:
    """The first format whose signature the record matches (the order above matters), or None."""
    if not isinstance(record, Mapping):
        return None
    return next((f.name for f in FORMATS.values() if f.signature(record)), None)
