"""Several requests' values optimised in one batch equal each request's alone, and the engine's
batched cells equal its one-at-a-time cells."""

from __future__ import annotations

import pytest
import torch

from goldenlayers.data import EditRequest, PromptAnswer
from goldenlayers.editing import EditError, get_editor
from goldenlayers.editing.batches import ordered_for_batching, prepared_batch, recomputed_columns
from goldenlayers.editing.values import optimise_value, optimise_values, values_for_requests
from goldenlayers.engine import CellKey, CellRunner, layer_batches, run_cells
from goldenlayers.models import load_model
from goldenlayers.models.tokens import stack_left_padded, teacher_forced_batch

LOCALITY = (PromptAnswer("The capital of Germany is", "Berlin"),)
REQUESTS = [  # prompts of different lengths, so the batch pads them differently
    EditRequest("a", "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English",
                "French", locality=LOCALITY),
    EditRequest("b", "Apple A5 was created by", "Apple A5", "Google", "Apple", locality=LOCALITY),
    EditRequest("c", "In the heart of the old town, the Eiffel Tower stands in", "Eiffel Tower",
                "Rome and nowhere else", "Paris", locality=LOCALITY),
]
# the subject ends the prompt: with kl_position "prompt_last" its KL row ("... is a") is the widest
SUBJECT_LAST = EditRequest("d", "Everyone has seen the Eiffel Tower", "Eiffel Tower", "Rome", "Paris")
SETTINGS = dict(n_context_templates=3, context_template_length=6, v_num_grad_steps=12, v_lr=0.02,
                v_weight_decay=0.001, v_loss_stop=0.0)


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def model64(request):
    return load_model(request.param, dtype=torch.float64)  # float64: equal up to 1e-10, not 1e-3


def _batches(handle, editor):
    config = editor.config_for(handle)
    return [prepared_batch(handle, r, config, editor.cache) for r in REQUESTS], config


def test_values_optimised_together_equal_each_alone(model64):
    layer = 1
    site = model64.adapter.edit_module(model64.model, layer)
    # no KL and no decay: the loss falls steadily, so a loss stop that the first request reaches at
    # its fourth step is passed by the others at other steps (or never); the batch must stop each
    # request on its own while the others go on
    settings = dict(SETTINGS, kl_factor=0.0, v_weight_decay=0.0)
    batches, config = _batches(model64, get_editor("r-rome", **settings))
    first = optimise_value(model64, batches[0], layer, site, config).losses
    config = get_editor("r-rome", **dict(settings, v_loss_stop=first[3] + 1e-9)).config_for(model64)
    alone = [optimise_value(model64, rb, layer, site, config) for rb in batches]
    together = optimise_values(model64, batches, layer, site, config)
    assert len({len(v.losses) for v in alone}) > 1, "every request stopped at the same step"
    for one, many in zip(alone, together):
        assert len(one.losses) == len(many.losses)
        assert torch.allclose(one.value_before, many.value_before, rtol=1e-10, atol=1e-12)
        assert torch.allclose(one.value, many.value, rtol=1e-8, atol=1e-10)
        assert many.losses == pytest.approx(one.losses, rel=1e-8)


def test_a_request_that_cannot_be_edited_gets_its_error_and_the_others_their_values(tiny_llama,
                                                                                 monkeypatch):
    import goldenlayers.editing.values as values_module

    def batch_or_error(handle, request, config, cache):  # as for a subject the tokenizer splits
        if request.case_id == "b":
            raise EditError("request b: cannot be batched")
        return prepared_batch(handle, request, config, cache)

    monkeypatch.setattr(values_module, "prepared_batch", batch_or_error)
    editor = get_editor("r-rome", **SETTINGS)
    layer = 1
    site = tiny_llama.adapter.edit_module(tiny_llama.model, layer)
    config = editor.config_for(tiny_llama)
    values = values_for_requests(tiny_llama, REQUESTS, layer, site, config, editor.cache)
    assert isinstance(values[1], EditError) and "request b" in str(values[1])
    alone = optimise_value(tiny_llama, prepared_batch(tiny_llama, REQUESTS[2], config, editor.cache),
                           layer, site, config)
    assert torch.allclose(values[2].value, alone.value, rtol=1e-4, atol=1e-5)


def test_stacked_left_padded_batches_keep_every_row(tiny_llama):
    tok = tiny_llama.tokenizer
    short = teacher_forced_batch(tok, ["Apple A5 was"], [" Google"], subjects=["Apple A5"],
                                 padding_side="left")
    long = teacher_forced_batch(tok, ["In the heart of the old town, Apple A5 was"], [" Google"],
                                subjects=["Apple A5"], padding_side="left")
    both = stack_left_padded(tok, [short, long])
    added = both.input_ids.shape[1] - short.input_ids.shape[1]
    assert added > 0
    real = both.attention_mask[0].bool()
    assert both.input_ids[0][real].tolist() == short.input_ids[0][short.attention_mask[0].bool()].tolist()
    assert both.position_ids[0, added:].tolist() == short.position_ids[0].tolist()
    assert both.subject_last.tolist() == [int(short.subject_last[0]) + added, int(long.subject_last[0])]
    assert both.prompt_last[0] == short.prompt_last[0] + added
    assert torch.equal(both.labels[1], long.labels[0])


def test_batched_cells_equal_cells_one_at_a_time(model64):
    editor_settings = dict(SETTINGS, v_loss_stop=0.05)
    keys = [CellKey("tiny", "hand", "test", "r-rome", layer, r.case_id, 0)
            for r in REQUESTS for layer in (0, 1)]
    requests = {r.case_id: r for r in REQUESTS}
    before = {n: p.detach().clone() for n, p in model64.model.named_parameters()}
    one_by_one = [CellRunner(model64, get_editor("r-rome", **editor_settings)).run(k, requests[k.case_id])
                  for k in keys]
    runner = CellRunner(model64, get_editor("r-rome", **editor_settings))
    batched = [row for batch in layer_batches(keys, requests_per_batch=2)
               for row in runner.run_batch([(keys[i], requests[keys[i].case_id]) for i in batch])]
    for name, p in model64.model.named_parameters():
        assert torch.equal(p, before[name]), f"{name} changed"
    by_key = {row.key: row for row in batched}
    for row in one_by_one:
        assert row.same_result(by_key[row.key], tolerance=1e-9), (row, by_key[row.key])
        assert row.error is None
    # run_cells: ordered by width and batched inside, the rows back in the order given
    cells = [(key, requests[key.case_id]) for key in reversed(keys)]
    arrived = []
    rows = run_cells(cells, CellRunner(model64, get_editor("r-rome", **editor_settings)),
                     requests_per_batch=2, on_row=arrived.append)
    assert [row.key for row in rows] == [key for key, _ in cells]
    assert len(arrived) == len(rows) and {id(row) for row in arrived} == {id(row) for row in rows}
    for row in rows:
        assert row.same_result(by_key[row.key], tolerance=1e-9), (row, by_key[row.key])


def test_layer_batches_go_block_by_block_and_layer_by_layer():
    keys = [CellKey("m", "d", split, "r-rome", layer, case, 0)
            for split, cases in (("proxy", "ab"), ("test", "cde")) for case in cases
            for layer in (0, 1)]
    batches = [[(keys[i].split, keys[i].case_id, keys[i].layer) for i in batch]
               for batch in layer_batches(keys, requests_per_batch=2)]
    assert batches == [
        [("proxy", "a", 0), ("proxy", "b", 0)], [("proxy", "a", 1), ("proxy", "b", 1)],
        [("test", "c", 0), ("test", "d", 0)], [("test", "c", 1), ("test", "d", 1)],
        [("test", "e", 0)], [("test", "e", 1)],
    ]
    with pytest.raises(ValueError):
        layer_batches(keys, requests_per_batch=0)


def test_a_prepared_value_is_for_one_request_alone(tiny_llama):
    editor = get_editor("r-rome", **SETTINGS)
    [prepared] = editor.prepare(tiny_llama, REQUESTS[:1], 1)
    with pytest.raises(ValueError, match="one request alone"):
        with editor.edited(tiny_llama, REQUESTS[:2], 1, prepared=prepared):
            pass


@pytest.mark.parametrize("kl_position", ["subject_last", "prompt_last"])
def test_recomputed_columns_are_those_of_the_prepared_batch(tiny_model, kl_position):
    editor = get_editor("r-rome", **dict(SETTINGS, kl_position=kl_position))
    config = editor.config_for(tiny_model)
    widths = []
    for request in [*REQUESTS, SUBJECT_LAST]:
        batch = prepared_batch(tiny_model, request, config, editor.cache).batch
        widths.append(recomputed_columns(tiny_model.tokenizer, request, config.kl_prompt,
                                         config.kl_position))
        assert widths[-1] == batch.input_ids.shape[1] - int(batch.subject_last.min()), request
    assert len(set(widths)) > 2  # the requests differ, so no constant passes


def test_ordering_for_batching_is_a_stable_sort_by_recomputed_columns(tiny_llama, monkeypatch):
    import goldenlayers.editing.batches as batches_module

    tokenizer = tiny_llama.tokenizer
    twin = EditRequest("e", REQUESTS[1].prompt, REQUESTS[1].subject, REQUESTS[1].target_new)
    requests = [REQUESTS[2], twin, REQUESTS[0], REQUESTS[1], SUBJECT_LAST]
    widths = {r.case_id: recomputed_columns(tokenizer, r) for r in requests}
    assert widths["d"] < widths["a"] < widths["e"] == widths["b"] < widths["c"]
    # "e" and "b" tie and keep their order, which is not the order of their case ids
    assert [r.case_id for r in ordered_for_batching(requests, tokenizer)] == ["d", "a", "e", "b", "c"]
    # in windows of two, each window is sorted and the windows keep their order
    assert [r.case_id for r in ordered_for_batching(requests, tokenizer, window=2)] == [
        "e", "c", "a", "b", "d"]

    def rewrite_row_or_error(tokenizer, request, prefix):  # as for a target with no tokens
        if request.case_id == "c":
            raise EditError("request c: the target has no tokens")
        return rewrite_row(tokenizer, request, prefix)

    rewrite_row = batches_module._rewrite_row
    monkeypatch.setattr(batches_module, "_rewrite_row", rewrite_row_or_error)
    assert recomputed_columns(tokenizer, REQUESTS[2]) == 0  # no error: the edit reports it later
    assert [r.case_id for r in ordered_for_batching(requests, tokenizer)] == ["c", "d", "a", "e", "b"]


def test_the_first_step_shared_by_the_layers_gives_the_same_values_bit_for_bit(tiny_model):
    _assert_shared_first_step_changes_nothing(tiny_model, tiny_model.adapter.edit_module)


def test_the_shared_first_step_at_the_block_output_as_memit_and_emmet_edit(tiny_llama):
    _assert_shared_first_step_changes_nothing(tiny_llama, tiny_llama.adapter.block)


def _assert_shared_first_step_changes_nothing(handle, site_of):
    from goldenlayers.models.unchanged import UnchangedWeights

    editor = get_editor("r-rome", **dict(SETTINGS, v_num_grad_steps=3))
    config = editor.config_for(handle)
    batches = [prepared_batch(handle, r, config, editor.cache) for r in REQUESTS]
    layers = range(handle.num_layers)
    alone = [optimise_values(handle, batches, layer, site_of(handle.model, layer), config)
             for layer in layers]
    reuse = UnchangedWeights()
    # from layer 1 up: layer 0 is below the shared pass, so computed alone
    shared = [optimise_values(handle, batches, layer, site_of(handle.model, layer), config,
                              reuse=reuse) for layer in (*layers[1:], 0)]
    shared = [shared[-1], *shared[:-1]]
    assert reuse.count("value first step") == 1  # one shared pass served layers 1..L-1
    for layer, (one, other) in enumerate(zip(alone, shared)):
        for a, b in zip(one, other):
            assert torch.equal(a.value, b.value), layer
            assert torch.equal(a.value_before, b.value_before), layer
            assert a.losses == b.losses, layer
            assert len(a.losses) == 3  # the first step's update reached the values


def test_leaving_out_the_last_loss_changes_no_value(tiny_llama):
    editor = get_editor("r-rome", **dict(SETTINGS, v_num_grad_steps=4))
    config = editor.config_for(tiny_llama)
    batches = [prepared_batch(tiny_llama, r, config, editor.cache) for r in REQUESTS]
    site = tiny_llama.adapter.edit_module(tiny_llama.model, 1)
    measured = optimise_values(tiny_llama, batches, 1, site, config)
    unmeasured = optimise_values(tiny_llama, batches, 1, site, config, last_loss=False)
    for a, b in zip(measured, unmeasured):
        assert torch.equal(a.value, b.value)
        assert len(a.losses) == 4 and b.losses == a.losses[:3]
