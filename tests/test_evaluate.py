"""Metrics, Overall and t-tests: hand-computed values, padding invariance, and the pre-edit state."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from goldenlayers.data.records import EditRequest, PromptAnswer
from goldenlayers.errors import GoldenLayersError
from goldenlayers.evaluate import (METRICS, compute_pre_edit, evaluate,
                                   higher_is_better, n_gram_entropy, overall_score, t_test,
                                   word_tokens)
from goldenlayers.evaluate import fluency as fluency_module
from goldenlayers.evaluate import metrics as metrics_module
from goldenlayers.models.handle import greedy_continuations
from goldenlayers.evaluate.metrics import locality_key
from goldenlayers.models.tokens import encode_prompt_target, teacher_forced_batch

DEFAULT, WRONG, OTHER = 0, 1, 3  # token ids no answer below uses


# --- a stand-in model whose next token we choose ------------------------------------------------

class TableModel:
    """The next-token argmax is looked up by the exact real tokens before it (padding never seen)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.table: dict[tuple[int, ...], int] = {}
        self.fingerprint = "table-model"
        self.device = torch.device("cpu")
        self.calls = 0

    def batch(self, prompts, targets=None, *, subjects=None, padding_side="right"):
        return teacher_forced_batch(self.tokenizer, prompts, targets, subjects=subjects,
                                    padding_side=padding_side)

    def contexts(self, prompt: str, answer: str) -> list[tuple[tuple[int, ...], int]]:
        """(tokens before answer token j, answer token j) for each j."""
        prompt_ids, answer_ids = encode_prompt_target(self.tokenizer, prompt, answer)
        return [(tuple(prompt_ids + answer_ids[:j]), token) for j, token in enumerate(answer_ids)]

    def teach(self, prompt: str, answer: str, correct: list[bool]) -> None:
        contexts = self.contexts(prompt, answer)
        assert len(contexts) == len(correct), f"{answer!r} is {len(contexts)} tokens"
        for (context, token), ok in zip(contexts, correct):
            self.table[context] = token if ok else WRONG


def table_logits_at(handle: TableModel, batch, mask):
    # The metrics must ask for logits only where a target token is predicted, never everywhere.
    assert torch.equal(mask, batch.predicts_target)
    handle.calls += 1
    chosen = []
    for b, t in mask.nonzero().tolist():
        real = batch.input_ids[b, : t + 1][batch.attention_mask[b, : t + 1].bool()]
        chosen.append(handle.table.get(tuple(real.tolist()), DEFAULT))
    logits = torch.zeros(len(chosen), len(handle.tokenizer))
    logits[torch.arange(len(chosen)), torch.tensor(chosen, dtype=torch.long)] = 1.0
    return logits


@pytest.fixture
def table_model(tiny_gpt2, monkeypatch):
    monkeypatch.setattr(metrics_module, "logits_at", table_logits_at)
    return TableModel(tiny_gpt2.tokenizer)


PORTABILITY = (PromptAnswer("Rome's country is", "Italian Republic", ("Italian Republic", "Italy")),
               PromptAnswer("The river through that city is called the", "river Tiber of old"))
REQUEST_A = EditRequest(
    "a", "The capital of France is", "France", "Rome Italy yes",
    rephrase_prompts=("France has its capital in", "What is the capital city of France? It is"),
    locality=(PromptAnswer("The Eiffel tower stands in", "Paris France today"),
              PromptAnswer("Water boils at", "100 degrees")),
    portability=PORTABILITY)
REQUEST_B = EditRequest("b", "Obama was born in", "Obama", "Kenya now",
                        locality=(PromptAnswer("Joe Biden, the former US president, was born in",
                                               "Scranton Pennsylvania"),))


def teach_requests(model: TableModel) -> None:
    """Sets the model's answers; the comments give each hand-computed value."""
    T, F = True, False
    model.teach(REQUEST_A.prompt, REQUEST_A.target_new, [T, F, T])  # rewrite 2/3
    model.teach(REQUEST_A.rephrase_prompts[0], REQUEST_A.target_new, [F, F, F])  # 0
    model.teach(REQUEST_A.rephrase_prompts[1], REQUEST_A.target_new, [T, T, F])  # 2/3: mean 1/3
    # The aliases share their first context: the model answers " Italy" there, then " Republic".
    model.teach(PORTABILITY[0].prompt, "Italian Republic", [F, T])  # first alias 1/2
    model.teach(PORTABILITY[0].prompt, "Italy", [T])  # second alias 1
    model.teach(PORTABILITY[1].prompt, PORTABILITY[1].answer, [F, F, T, F])  # 1/4
    model.teach(REQUEST_B.prompt, REQUEST_B.target_new, [F, T])  # rewrite 1/2
    for request in (REQUEST_A, REQUEST_B):
        for pair in request.locality:
            size = len(model.contexts(pair.prompt, pair.answer))
            model.teach(pair.prompt, pair.answer, [True] * size)


def edit_locality(model: TableModel) -> None:
    """Changes the predictions at 1 of 3 positions of A's first locality prompt, 2 of 4 of B's."""
    a_first = model.contexts(REQUEST_A.locality[0].prompt, REQUEST_A.locality[0].answer)
    b_only = model.contexts(REQUEST_B.locality[0].prompt, REQUEST_B.locality[0].answer)
    assert len(a_first) == 3 and len(b_only) == 4
    for context, _ in (a_first[1], b_only[0], b_only[3]):
        model.table[context] = OTHER


# locality: A = mean(2/3, 1) = 5/6, B = 2/4
# portability: "first" mean(1/2, 1/4) = 3/8, "best" mean(1, 1/4)
EXPECTED_A = {"rewrite_accuracy": 2 / 3, "rephrase_accuracy": 1 / 3, "locality": 5 / 6,
              "portability": 3 / 8, "fluency": None}
EXPECTED_B = {"rewrite_accuracy": 1 / 2, "rephrase_accuracy": None, "locality": 1 / 2,
              "portability": None, "fluency": None}


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_teacher_forced_metrics_equal_hand_values(table_model, padding_side, batch_size):
    teach_requests(table_model)
    pre = compute_pre_edit(table_model, [REQUEST_A, REQUEST_B], padding_side="left")
    edit_locality(table_model)
    result = evaluate(table_model, [REQUEST_A, REQUEST_B], pre=pre, batch_size=batch_size,
                      padding_side=padding_side)
    a, b = (row.values() for row in result.per_request)
    assert a == pytest.approx(EXPECTED_A) and b == pytest.approx(EXPECTED_B)
    assert result.means == pytest.approx({"rewrite_accuracy": 7 / 12, "rephrase_accuracy": 1 / 3,
                                          "locality": 2 / 3, "portability": 3 / 8})
    assert result.counts == {"rewrite_accuracy": 2, "rephrase_accuracy": 1, "locality": 2,
                             "portability": 1}
    assert result.skipped == ("fluency",)


def test_best_alias_rule_takes_the_best_alias(table_model):
    teach_requests(table_model)
    best = evaluate(table_model, [REQUEST_A], metrics=["portability"], alias_rule="best")
    assert best.per_request[0].portability == pytest.approx((1 + 1 / 4) / 2)
    assert best.settings["alias_rule"] == "best"
    with pytest.raises(GoldenLayersError, match="alias_rule"):
        evaluate(table_model, [REQUEST_A], alias_rule="any")


def test_one_forward_pass_per_batch(table_model):
    teach_requests(table_model)
    pre = compute_pre_edit(table_model, [REQUEST_A, REQUEST_B])
    table_model.calls = 0
    evaluate(table_model, [REQUEST_A, REQUEST_B], pre=pre, batch_size=16)  # 11 sequences
    assert table_model.calls == 1
    table_model.calls = 0
    evaluate(table_model, [REQUEST_A, REQUEST_B], pre=pre, batch_size=4)
    assert table_model.calls == 3


def test_unsupported_and_unasked_metrics_are_skipped(table_model):
    teach_requests(table_model)
    result = evaluate(table_model, [REQUEST_B], metrics=["rewrite_accuracy", "rephrase_accuracy"])
    assert result.means == pytest.approx({"rewrite_accuracy": 1 / 2})
    assert result.skipped == ("rephrase_accuracy", "locality", "portability", "fluency")
    assert result.per_request[0].locality is None
    with pytest.raises(GoldenLayersError, match="unknown metric 'accuracy'"):
        evaluate(table_model, [REQUEST_B], metrics=["accuracy"])


def test_pre_edit_state_is_keyed_by_request_and_model(table_model):
    teach_requests(table_model)
    pre = compute_pre_edit(table_model, [REQUEST_A, REQUEST_B])
    edit_locality(table_model)
    # Reused for a reordered subset: looked up by the request, not by position.
    only_b = evaluate(table_model, [REQUEST_B], pre=pre, metrics=["locality"])
    assert only_b.per_request[0].locality == pytest.approx(1 / 2)
    with pytest.raises(GoldenLayersError, match="no locality predictions for case 'b'"):
        evaluate(table_model, [REQUEST_B], pre=compute_pre_edit(table_model, [REQUEST_A]))
    table_model.fingerprint = "another-model"
    with pytest.raises(GoldenLayersError, match="another model"):
        evaluate(table_model, [REQUEST_B], pre=pre)
    with pytest.raises(GoldenLayersError, match="occurs twice"):
        evaluate(table_model, [REQUEST_B, REQUEST_B], pre=pre)


# --- real tiny models ------------------------------------------------------------------------

LOCAL_REQUESTS = [
    EditRequest("x", "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English",
                rephrase_prompts=("Danielle Darrieux speaks",),
                locality=(PromptAnswer("The mother tongue of Léon Blum is", "French"),
                          PromptAnswer("Paris is the capital of", "France, a country in Europe"))),
    EditRequest("y", "Toko Yasuda plays the", "Toko Yasuda", "piano",
                locality=(PromptAnswer("Gordon Gekko is a character in the film", "Wall Street"),)),
]


def test_locality_is_one_when_the_model_is_unchanged(tiny_model):
    # The pre-edit state comes from left-padded batches of 2, the evaluation from right-padded
    # batches of 16: equal argmaxes everywhere also shows padding does not move any position.
    pre = compute_pre_edit(tiny_model, LOCAL_REQUESTS, batch_size=2, padding_side="left")
    result = evaluate(tiny_model, LOCAL_REQUESTS, pre=pre, padding_side="right")
    assert [row.locality for row in result.per_request] == [1.0, 1.0]
    assert result.means["locality"] == 1.0
    assert result.skipped == ("portability", "fluency")


def test_padding_side_gives_identical_argmaxes(tiny_model):
    # Batches of 1 have no padding at all: the reference for both padding sides.
    alone = compute_pre_edit(tiny_model, LOCAL_REQUESTS, batch_size=1).tokens
    keys = [locality_key(r) for r in LOCAL_REQUESTS]
    assert [len(t) for k in keys for t in alone[k]] == [1, 6, 2]  # answer tokens per prompt
    for side in ("left", "right"):
        padded = compute_pre_edit(tiny_model, LOCAL_REQUESTS, batch_size=3, padding_side=side)
        assert padded.tokens == alone


def test_locality_drops_when_the_weights_change(tiny_llama):
    adapter, model = tiny_llama.adapter, tiny_llama.model
    pre = compute_pre_edit(tiny_llama, LOCAL_REQUESTS)
    original = [adapter.edit_weight(model, layer).detach().clone() for layer in range(4)]
    generator = torch.Generator().manual_seed(0)
    try:
        for layer in range(4):
            shape = adapter.edit_weight_out_in(model, layer).shape
            adapter.add_to_edit_weight(model, layer, 5.0 * torch.randn(shape, generator=generator))
        changed = evaluate(tiny_llama, LOCAL_REQUESTS, pre=pre, metrics=["locality"])
    finally:
        with torch.no_grad():
            for layer in range(4):
                adapter.edit_weight(model, layer).copy_(original[layer])
    assert changed.means["locality"] < 1.0
    restored = evaluate(tiny_llama, LOCAL_REQUESTS, pre=pre, metrics=["locality"])
    assert restored.means["locality"] == 1.0


# --- fluency ----------------------------------------------------------------------------------

FIXED_TEXT = "The cat sat on the mat. The cat sat"
# Words: The cat sat on the mat . The cat sat (10). Bigrams (9): (The,cat) x2, (cat,sat) x2 and
# five singletons, so H2 = 2 * (2/9) log2(9/2) + 5 * (1/9) log2 9 = log2 9 - 4/9.
# Trigrams (8): (The,cat,sat) x2 and six singletons, so H3 = (2/8) * 2 + 6 * (1/8) * 3 = 2.75.
H2, H3 = math.log2(9) - 4 / 9, 2.75
FIXED_FLUENCY = (2 / 3 * H2 + 4 / 3 * H3) / 2


def test_n_gram_entropy_of_a_fixed_text():
    assert word_tokens(FIXED_TEXT) == ["The", "cat", "sat", "on", "the", "mat", ".", "The", "cat",
                                       "sat"]
    assert n_gram_entropy(FIXED_TEXT) == pytest.approx(FIXED_FLUENCY, abs=1e-12)
    assert n_gram_entropy("the the the the the") == 0.0  # one repeated n-gram: no entropy
    assert n_gram_entropy("hello") == 0.0  # too short for any bigram
    assert n_gram_entropy(FIXED_TEXT, ns=(2,), weights=(1.0,)) == pytest.approx(H2)


def test_fluency_scores_the_generated_text(table_model, monkeypatch):
    monkeypatch.setattr(fluency_module, "greedy_continuations",
                        lambda handle, prompts, n, batch_size: [FIXED_TEXT] * len(prompts))
    result = evaluate(table_model, [REQUEST_B], metrics=["fluency"], fluency_include_prompt=False)
    assert result.per_request[0].fluency == pytest.approx(FIXED_FLUENCY)
    with_prompt = evaluate(table_model, [REQUEST_B], metrics=["fluency"])
    expected = n_gram_entropy(REQUEST_B.prompt + FIXED_TEXT)
    assert with_prompt.means == pytest.approx({"fluency": expected})
    assert expected != pytest.approx(FIXED_FLUENCY)


def test_fluency_on_a_tiny_model_generates_greedily(tiny_gpt2):
    result = evaluate(tiny_gpt2, LOCAL_REQUESTS, metrics=["fluency"], fluency_tokens=6)
    texts = greedy_continuations(tiny_gpt2, [r.prompt for r in LOCAL_REQUESTS], 6)
    assert [row.fluency for row in result.per_request] == pytest.approx(
        [n_gram_entropy(r.prompt + t) for r, t in zip(LOCAL_REQUESTS, texts)])
    assert result.settings["fluency_tokens"] == 6
    assert result.settings["fluency_procedure"] == "greedy"


def test_easyedit_fluency_samples_top_k_5_seeded_and_scores_the_continuation(tiny_gpt2, monkeypatch):
    seen = {}
    generate = tiny_gpt2.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return generate(**kwargs)
    monkeypatch.setattr(tiny_gpt2.model, "generate", spy)
    first = evaluate(tiny_gpt2, LOCAL_REQUESTS, metrics=["fluency"], fluency_tokens=8,
                     fluency_procedure="easyedit", fluency_seed=3)
    assert (seen["do_sample"], seen["top_k"], seen["max_new_tokens"]) == (True, 5, 8)
    again = evaluate(tiny_gpt2, LOCAL_REQUESTS, metrics=["fluency"], fluency_tokens=8,
                     fluency_procedure="easyedit", fluency_seed=3)
    assert [r.fluency for r in first.per_request] == [r.fluency for r in again.per_request]
    assert first.settings["fluency_procedure"] == "easyedit"
    assert first.settings["fluency_seed"] == 3 and first.settings["fluency_include_prompt"] is False
    with pytest.raises(GoldenLayersError, match="fluency procedure must be one of greedy, easyedit"):
        evaluate(tiny_gpt2, LOCAL_REQUESTS, metrics=["fluency"], fluency_procedure="beam")


# --- Overall ----------------------------------------------------------------------------------

TABLE = [
    {"rewrite_accuracy": 1.0, "locality": 0.5, "fluency": 6.0},
    {"rewrite_accuracy": 0.5, "locality": 1.0, "fluency": 4.0},
    {"rewrite_accuracy": 0.0, "locality": 0.75, "fluency": 4.5},
]


def test_every_metric_is_higher_is_better_declared_once():
    assert all(higher_is_better(m) for m in (*METRICS, "overall"))
    with pytest.raises(GoldenLayersError, match="unknown metric 'speed'"):
        higher_is_better("speed")


def test_overall_min_max_with_fluency_higher_is_better():
    scores = overall_score(TABLE)
    # rewrite -> 1, 1/2, 0; locality -> 0, 1, 1/2; fluency = 6, 4, 4.5 -> 1, 0, 1/4
    assert scores == pytest.approx([(1 + 0 + 1) / 3, (0.5 + 1 + 0) / 3, (0 + 0.5 + 0.25) / 3])
    assert scores.normalisation == "min-max"
    assert "negated" not in scores.describe()
    # A lower-is-better set still negates on request (for a table whose metric falls as it improves).
    negated = overall_score(TABLE, lower_is_better=("fluency",))
    assert negated == pytest.approx([(1 + 0 + 0) / 3, (0.5 + 1 + 1) / 3, (0 + 0.5 + 0.75) / 3])


def test_overall_constant_column_and_other_normalisations():
    rows = [{"a": 0.2, "b": 0.7}, {"a": 0.6, "b": 0.7}]
    assert overall_score(rows) == pytest.approx([(0 + 0.5) / 2, (1 + 0.5) / 2])
    assert overall_score([{"a": 0.3}]) == [0.5]
    assert overall_score(TABLE, normalisation="none") == pytest.approx(
        [(1 + 0.5 + 6) / 3, (0.5 + 1 + 4) / 3, (0 + 0.75 + 4.5) / 3])
    # The paper's WikiRecent R-ROME / CMA row: RwA, LOC, PRT, FLC -> printed OV 0.4925, which
    # treats its FLC (in [0, 1], marked with a down arrow) as lower-is-better: 1 - FLC.
    paper = {"rewrite_accuracy": 0.9622, "locality": 0.6124, "portability": 0.3038,
             "fluency": 0.9084}
    assert overall_score([paper], normalisation="one-minus",
                         lower_is_better=("fluency",))[0] == pytest.approx(0.4925, abs=1e-4)
    with pytest.raises(GoldenLayersError, match="row 1 has no value for metric 'fluency'"):
        overall_score([TABLE[0], {"rewrite_accuracy": 1.0, "locality": 1.0}])
    with pytest.raises(GoldenLayersError, match="normalisation"):
        overall_score(TABLE, normalisation="z")


# --- t-tests ----------------------------------------------------------------------------------

A = [0.91, 0.95, 0.88, 0.97, 0.93, 0.90, 0.96, 0.94]
B = [0.85, 0.89, 0.86, 0.90, 0.84, 0.88, 0.91, 0.87]
C = [0.92, 0.93, 0.87, 0.96, 0.95, 0.89, 0.94, 0.95]


def test_t_tests_match_scipy():
    two = t_test(A, B)
    reference = stats.ttest_ind(A, B, equal_var=True)
    assert (two.statistic, two.p_value) == pytest.approx((reference.statistic, reference.pvalue))
    assert two.significant and two.p_value < 0.05 and not two.paired
    assert (two.mean_a, two.std_a) == pytest.approx((sum(A) / 8, stats.tstd(A)))
    assert two.n == (8, 8)
    paired = t_test(A, C, paired=True)
    reference = stats.ttest_rel(A, C)
    assert (paired.statistic, paired.p_value) == pytest.approx(
        (reference.statistic, reference.pvalue))
    assert not paired.significant and paired.p_value > 0.05 and paired.paired
    # Significance follows alpha.
    assert not t_test(A, B, alpha=two.p_value / 2).significant


def test_t_tests_without_spread_and_bad_input():
    same = t_test([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    assert (same.statistic, same.p_value, same.significant) == (0.0, 1.0, False)
    assert t_test(A, A, paired=True).p_value == 1.0
    shifted = t_test([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], paired=True)
    assert shifted.p_value == 0.0 and shifted.significant and shifted.statistic == math.inf
    with pytest.raises(GoldenLayersError, match="one size"):
        t_test(A, B[:5], paired=True)
    with pytest.raises(GoldenLayersError, match="at least 2"):
        t_test([1.0], B)


# --- after a real edit (slow) -----------------------------------------------------------------

@pytest.mark.slow
def test_locality_below_one_after_an_edit_on_smollm2(smollm2):
    from goldenlayers import editing

    request = EditRequest(
        "eiffel", "The Eiffel Tower is located in the city of", "Eiffel Tower", "Rome",
        locality=(PromptAnswer("The Eiffel Tower was designed by the engineer", "Gustave Eiffel"),
                  PromptAnswer("The Louvre museum is located in the city of", "Paris"),
                  PromptAnswer("The Arc de Triomphe stands in the city of", "Paris, France")))
    pre = compute_pre_edit(smollm2, [request])
    before = evaluate(smollm2, [request], pre=pre)
    with editing.get_editor("r-rome").edited(smollm2, [request], 4):
        after = evaluate(smollm2, [request], pre=pre)
    restored = evaluate(smollm2, [request], pre=pre)
    assert before.means["locality"] == 1.0 and restored.means["locality"] == 1.0
    assert after.means["rewrite_accuracy"] > before.means["rewrite_accuracy"]
    # Per-request locality is the mean over its prompts: below 1 means some prompt moved.
    assert after.means["locality"] < 1.0, "the edit left every related locality prompt unchanged"


def test_locality_without_an_answer_is_measured_against_the_unedited_models_own(tiny_llama):
    """Issue 30: ``"ground_truth": null`` locality pairs score agreement with the unedited model's
    greedy answer, exactly as if the file had given that answer."""
    from dataclasses import replace

    from goldenlayers.editing.restore import preserved

    open_pair = PromptAnswer("The Eiffel Tower is in", None)
    request = EditRequest("1", "Paris is the capital of", "Paris", "Italy", locality=(open_pair,))
    pre = compute_pre_edit(tiny_llama, [request])
    greedy = greedy_continuations(tiny_llama, [open_pair.prompt],
                                  metrics_module.MODEL_ANSWER_TOKENS)[0].strip()
    assert pre.answers == {locality_key(request): (greedy,)}
    explicit = replace(request, locality=(PromptAnswer(open_pair.prompt, greedy),))
    pre_explicit = compute_pre_edit(tiny_llama, [explicit])
    assert evaluate(tiny_llama, [request], pre=pre).per_request[0].locality == 1.0
    layer = 1
    with preserved(tiny_llama, [layer]), torch.no_grad():
        weight = tiny_llama.adapter.edit_weight(tiny_llama.model, layer)
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
        moved = evaluate(tiny_llama, [request], pre=pre).per_request[0].locality
        given = evaluate(tiny_llama, [explicit], pre=pre_explicit).per_request[0].locality
    assert moved == given
    with pytest.raises(GoldenLayersError, match="locality prompts without an answer"):
        evaluate(tiny_llama, [request], pre=pre_explicit)


def test_values_equal_up_to_rounding_are_no_spread_and_no_scipy_warning():
    """Issue 30: ``report`` printed scipy's precision warnings; equal values (0.1 + 0.2 and 0.3)
    are no difference to test, and the report says so in words."""
    import warnings

    from goldenlayers.evaluate import bootstrap_interval, t_test
    from goldenlayers.report.tables import fmt_test

    a, b = [0.1 + 0.2] * 10, [0.3] * 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for paired in (True, False):
            result = t_test(a, b, paired=paired)
            assert result.no_spread and result.p_value == 1.0 and not result.significant
            assert fmt_test(result) == "no test: all values equal"
        assert bootstrap_interval(a + b).low == bootstrap_interval(a + b).high
        moved = t_test([0.5] * 10, [0.25] * 10)
    assert moved.no_spread and moved.p_value == 0.0
    assert fmt_test(moved) == "no test: no spread, means differ"
    assert not t_test([0.1, 0.2, 0.4], [0.3, 0.3, 0.3]).no_spread
