"""The token facts written once in models/tokens.py (and the subject search in text.py)."""

import types

import pytest

from goldenlayers.models.load import tiny_tokenizer
from goldenlayers.models.tokens import (encode_prompt_target, pad_rows, pad_token_id,
                                        subject_last_token, subject_token_span, teacher_forced_row)
from goldenlayers.text import find_subject

PROMPTS = [("Danielle Darrieux's mother tongue is", "Danielle Darrieux"),
           ("The Eiffel Tower is located in", "Eiffel Tower"),
           ("Where is the eiffel tower? The Eiffel Tower is in", "eiffel tower")]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_find_subject_is_exact_first_then_case_insensitive_from_start():
    assert find_subject("Paris is in France", "Paris") == (0, 5)
    assert find_subject("the eiffel tower is", "Eiffel Tower") == (4, 16)
    assert find_subject("Eiffel tower, EIFFEL TOWER", "EIFFEL TOWER") == (14, 26)  # exact wins
    assert find_subject("Rome. Rome is", "Rome", start=5) == (6, 10)
    assert find_subject("Paris is in France", "Berlin") is None


def test_subject_last_token_is_the_subjects_last_token(tokenizer):
    for prompt, subject in PROMPTS:
        last = subject_last_token(tokenizer, prompt, subject)
        ids = tokenizer(prompt)["input_ids"]
        assert tokenizer.decode(ids[: last + 1]).rstrip().lower().endswith(subject.lower())
        assert not tokenizer.decode(ids[:last]).rstrip().lower().endswith(subject.lower())
    prefix = "Eiffel Tower. "  # a context template that happens to hold the subject too
    text = prefix + PROMPTS[1][0]
    assert subject_last_token(tokenizer, text, "Eiffel Tower", start=len(prefix)) > \
        subject_last_token(tokenizer, text, "Eiffel Tower")
    with pytest.raises(ValueError, match="'Berlin' does not occur"):
        subject_last_token(tokenizer, "Paris is", "Berlin")


def test_subject_token_span_covers_exactly_the_subject_tokens(tokenizer):
    for prompt, subject in PROMPTS:
        first, end = subject_token_span(tokenizer, prompt, subject)
        ids = tokenizer(prompt)["input_ids"]
        assert tokenizer.decode(ids[first:end]).strip() == prompt[
            slice(*find_subject(prompt, subject))]
        assert end - 1 == subject_last_token(tokenizer, prompt, subject)


def test_pad_token_id_falls_back_to_end_of_sequence():
    assert pad_token_id(types.SimpleNamespace(pad_token_id=3, eos_token_id=7)) == 3
    assert pad_token_id(types.SimpleNamespace(pad_token_id=None, eos_token_id=7)) == 7
    assert pad_token_id(types.SimpleNamespace(pad_token_id=0, eos_token_id=7)) == 0  # 0 is an id
    with pytest.raises(ValueError, match="neither"):
        pad_token_id(types.SimpleNamespace(pad_token_id=None, eos_token_id=None))


def test_encode_prompt_target_splits_the_running_text(tokenizer):
    prompt_ids, target_ids = encode_prompt_target(tokenizer, "The capital of France is", "Paris")
    assert prompt_ids + target_ids == tokenizer("The capital of France is Paris")["input_ids"]
    assert tokenizer.decode(target_ids) == " Paris"  # one space before the target
    assert encode_prompt_target(tokenizer, "The capital is", " Paris") == encode_prompt_target(
        tokenizer, "The capital is", "Paris")


def test_teacher_forced_row_labels_the_positions_that_predict_the_target():
    ids, labels = teacher_forced_row([1, 2, 3], [40, 50])
    assert ids == [1, 2, 3, 40, 50]
    assert labels == [-100, -100, 40, 50, -100]  # position p is labelled with token p + 1
    assert teacher_forced_row([1, 2], []) == ([1, 2], [-100, -100])


def test_pad_rows_lines_rows_up_on_either_side():
    tokenizer = types.SimpleNamespace(pad_token_id=0, eos_token_id=9)
    rows, labels = [[5, 6, 7], [8]], [[-100, 7, -100], [-100]]
    right = pad_rows(tokenizer, rows, labels, prompt_lengths=[2, 1], subject_last=[0, -1])
    left = pad_rows(tokenizer, rows, labels, [2, 1], [0, -1], padding_side="left")
    assert right.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert left.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert left.position_ids[1, 2] == right.position_ids[1, 0] == 0
    assert left.prompt_last.tolist() == [1, 2] and right.prompt_last.tolist() == [1, 0]
    assert left.subject_last.tolist() == [0, -1]  # -1 (no subject) is not shifted
    assert left.labels[0, 1] == 7 and left.predicts_target.sum() == 1
    with pytest.raises(ValueError, match="padding_side"):
        pad_rows(tokenizer, rows, labels, [2, 1], [0, -1], padding_side="middle")
