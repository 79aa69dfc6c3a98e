"""Causal tracing: no noise gives no effect; restoring everything gives the clean probability back."""

import pytest
import torch

from goldenlayers.data import EditRequest
from goldenlayers.locate import get_locator
from goldenlayers.locate.causal_tracing import (clean_run, known_facts, restored_probabilities,
                                                window_layers, window_masks)
from goldenlayers.models.handle import last_prompt_logits
from goldenlayers.models.tokens import encode_prompt_target, subject_token_span

REQUESTS = [
    EditRequest("1", "Danielle Darrieux's mother tongue is", "Danielle Darrieux", "English", "French"),
    EditRequest("2", "The Eiffel Tower is located in", "Eiffel Tower", "Rome", "Paris"),
]


def test_zero_noise_gives_zero_indirect_effect_everywhere(tiny_model):
    scores = get_locator("cma", noise=0.0, samples=2, known_only=False).locate(tiny_model, REQUESTS)
    assert len(scores.per_request) == len(scores.request_ids) >= 1
    for row in scores.per_request:
        assert len(row) == tiny_model.num_layers
        assert max(abs(v) for v in row) < 1e-6
    assert max(abs(v) for v in scores.scores) < 1e-6


def test_restoring_the_residual_stream_everywhere_recovers_the_clean_probability(tiny_model):
    handle, request = tiny_model, REQUESTS[1]
    batch = handle.batch([request.prompt])
    answer = encode_prompt_target(handle.tokenizer, request.prompt, request.target_old)[1][0]
    blocks = {f"block{l}": handle.adapter.block(handle.model, l) for l in range(handle.num_layers)}
    p_clean, clean = clean_run(handle, batch, answer, blocks)
    span = subject_token_span(handle.tokenizer, request.prompt, request.subject)
    d_model = clean["block0"].shape[-1]
    scale = 3 * handle.model.get_submodule(handle.adapter.embedding).weight.std().item()
    noise = scale * torch.randn(4, span[1] - span[0], d_model, generator=torch.Generator().manual_seed(0))
    restore = torch.tensor([[False] * len(blocks), [True] * len(blocks)])  # corrupted; all restored
    corrupted, restored = restored_probabilities(
        handle, batch, answer, noise=noise, span=span, sites=blocks, clean=clean, restore=restore,
        positions=range(batch.input_ids.shape[1])).tolist()
    assert restored == pytest.approx(p_clean, rel=1e-5)
    assert corrupted != pytest.approx(p_clean, rel=1e-3)  # the noise did change the answer


def test_windows_are_ten_layers_around_l_clipped():
    assert list(window_layers(0, 10, 30)) == [0, 1, 2, 3, 4]
    assert list(window_layers(15, 10, 30)) == list(range(10, 20))
    assert list(window_layers(29, 10, 30)) == list(range(24, 30))
    masks = window_masks(4, 10)
    assert not masks[0].any() and masks[1:].all()  # 4 layers: every window covers them all
    assert window_masks(30, 10)[1 + 15].nonzero()[:, 0].tolist() == list(range(10, 20))


def test_known_facts_compare_the_greedy_token_with_the_answer(tiny_llama):
    prompt = REQUESTS[0].prompt
    greedy = last_prompt_logits(tiny_llama, tiny_llama.batch([prompt]))[0].argmax().item()
    own = tiny_llama.tokenizer.decode([greedy]).strip() or "x"
    known = known_facts(tiny_llama, REQUESTS[:1] * 2, [own, "zebra-crossing"])
    assert known == [encode_prompt_target(tiny_llama.tokenizer, prompt, own)[1][0] == greedy, False]


def test_tracing_is_seeded_and_says_which_facts_it_used(tiny_gpt2):
    first = get_locator("cma", samples=3, seed=1, known_only=False).locate(tiny_gpt2, REQUESTS)
    again = get_locator("cma", samples=3, seed=1, known_only=False).locate(tiny_gpt2, REQUESTS)
    other = get_locator("cma", samples=3, seed=2, known_only=False).locate(tiny_gpt2, REQUESTS)
    assert first.scores == again.scores and first.scores != other.scores
    assert first.golden_layer == max(range(4), key=lambda l: (first.scores[l], -l))
    assert any("facts" in note for note in first.notes) and first.excluded == []


def test_facts_the_model_does_not_know_give_no_layer(tiny_gpt2):
    """A random tiny model knows none of these facts: tracing would measure noise, so no layer."""
    scores = get_locator("cma", samples=3).locate(tiny_gpt2, REQUESTS)
    assert scores.golden_layer is None and scores.top_k == [] and scores.scores == []
    assert any("not applicable" in note and "knows 0 of" in note for note in scores.notes)
    assert '"golden_layer": null' in scores.to_json()


def test_facts_without_an_old_answer_are_traced_at_the_models_own_answer_and_said_so(tiny_gpt2):
    """WikiRecent has no old answers: the old answer is the model's own greedy word, which the
    model "knows" by construction, so the note must not pass it off as a known fact."""
    from goldenlayers.locate.answers import greedy_answers

    requests = [EditRequest(r.case_id, r.prompt, r.subject, r.target_new, None) for r in REQUESTS]
    own = greedy_answers(tiny_gpt2, requests, 8)
    known = known_facts(tiny_gpt2, requests, own)
    scores = get_locator("cma", samples=3, min_known=1).locate(tiny_gpt2, requests)
    assert scores.request_ids == [r.case_id for r, k in zip(requests, known) if k]
    assert any(known)  # the tiny model's own first word is, as a rule, its greedy next token
    assert any(f"{sum(known)} of the kept facts have no old answer in the data set" in note
               for note in scores.notes)
