"""Editors: the update formulas, exact restore, the fast value optimisation, configs, templates,
covariance statistics, and (slow) R-ROME on SmolLM2-135M."""

from __future__ import annotations

import types

import pytest
import torch

from goldenlayers.data.records import EditRequest
from goldenlayers.editing import (EDITORS, ConfigError, EditCache, EditError, RomeConfig,
                                  get_editor)
from goldenlayers.editing import covariance
from goldenlayers.editing.batches import prepared_batch
from goldenlayers.editing.config import EmmetConfig, RRomeConfig, resolve
from goldenlayers.editing.profiles import model_family
from goldenlayers.editing.keys import at_subject, mean_key, template_keys
from goldenlayers.editing.templates import context_templates
from goldenlayers.editing.updates import UpdateError, emmet_update, rank_one_update
from goldenlayers.models import load_model
from goldenlayers.models.handle import greedy_continuations, hidden_states
from goldenlayers.models.hooks import trace
from goldenlayers.models.partial import resume_point, run_from
from goldenlayers.models.unchanged import UnchangedWeights

REQUEST = EditRequest(case_id="0", prompt="The mother tongue of Danielle Darrieux is",
                      subject="Danielle Darrieux", target_new="English", target_old="French")
FEW_STEPS = dict(v_num_grad_steps=6, n_context_templates=2, context_template_length=6)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache():
    return EditCache()


def weights(handle) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in handle.model.state_dict().items()}


def assert_same_weights(handle, saved) -> None:
    now = handle.model.state_dict()
    assert all(torch.equal(now[name], tensor) for name, tensor in saved.items())


# --- models/partial.py: the top of the decoder, replayed ------------------------------------------


@pytest.mark.parametrize("layer, start", [(0, 0), (2, 0), (2, 6), (3, 20)])
def test_replaying_the_upper_blocks_equals_the_full_forward(tiny_model, layer, start):
    long = " ".join(f"word{i}" for i in range(14))  # wider than tiny Gemma's sliding window (32)
    batch = tiny_model.batch([long + " The capital of France is", "Hello"], ["Paris", "x"],
                             padding_side="left")
    full = hidden_states(tiny_model, batch)
    point = resume_point(tiny_model, batch, layer, start)
    real = batch.attention_mask[:, start:].bool()
    for _ in range(2):  # a second run sees the same cache: the first left it untouched
        part = run_from(tiny_model, point)
        torch.testing.assert_close(part[real], full[:, start:][real], rtol=1e-4, atol=1e-5)


def test_hooks_fire_in_the_replayed_blocks(tiny_llama):
    batch = tiny_llama.batch(["The capital of France is"])
    point = resume_point(tiny_llama, batch, 2, 3)
    module = tiny_llama.adapter.edit_module(tiny_llama.model, 3)
    with trace({"m": module}, edit_output=lambda _, out: out + 1.0):
        edited = run_from(tiny_llama, point)
    assert not torch.allclose(edited, run_from(tiny_llama, point))


def test_one_recorded_pass_serves_every_layer_while_the_weights_are_unchanged(tiny_model,
                                                                                 monkeypatch):
    import goldenlayers.models.partial as partial

    batch = tiny_model.batch(["one two three The capital of France is", "Hello"], ["Paris", "x"],
                             padding_side="left")
    alone = {layer: run_from(tiny_model, resume_point(tiny_model, batch, layer, 4))
             for layer in range(tiny_model.num_layers)}
    passes = []
    record = partial._record
    monkeypatch.setattr(partial, "_record", lambda *a, **k: passes.append(a) or record(*a, **k))
    reuse = UnchangedWeights()
    for layer in range(tiny_model.num_layers):
        assert torch.equal(run_from(tiny_model, resume_point(tiny_model, batch, layer, 4, reuse)),
                           alone[layer])  # the same pass, so the same bits
    for text in ("Hello there", "Good morning to you"):  # two passes more: the first one goes
        resume_point(tiny_model, tiny_model.batch([text], padding_side="left"), 1, 0, reuse)
    resume_point(tiny_model, batch, 1, 4, reuse)
    assert len(passes) == 4
    resume_point(tiny_model, batch, 1, 4)  # no store given: a pass of its own
    assert len(passes) == 5


# --- the update formulas (updates.py) -------------------------------------------------------------


def test_rank_one_update_maps_the_key_to_the_value():
    g = torch.Generator().manual_seed(0)
    weight, key, value = torch.randn(6, 9, generator=g), torch.randn(9, generator=g), torch.randn(6, generator=g)
    u = torch.randn(9, generator=g)
    left, right = rank_one_update(value - weight @ key, u, key)
    new = weight.double() + left @ right.T
    torch.testing.assert_close(new @ key.double(), value.double(), rtol=1e-5, atol=1e-5)


def test_near_zero_denominator_is_refused():
    key = torch.tensor([1.0, 0.0, 0.0])
    u = torch.tensor([0.0, 1.0, 0.0])  # orthogonal to the key
    with pytest.raises(UpdateError, match="near-zero denominator"):
        rank_one_update(torch.ones(4), u, key)


def test_emmet_with_one_request_and_no_lambda_is_r_rome():
    g = torch.Generator().manual_seed(1)
    d_out, d_in = 5, 8
    weight, key, value = torch.randn(d_out, d_in, generator=g), torch.randn(d_in, generator=g), torch.randn(d_out, generator=g)
    a = torch.randn(d_in, d_in, generator=g)
    c = a @ a.T + 0.1 * torch.eye(d_in)  # a covariance
    c_inv_k = torch.linalg.solve(c.double(), key.double())
    residual = value - weight @ key
    rome_left, rome_right = rank_one_update(residual, c_inv_k, key)
    emmet_left, emmet_right = emmet_update(residual[:, None], key[:, None], c_inv_k[:, None] / 1e4, 0.0)
    torch.testing.assert_close(emmet_left @ emmet_right.T, rome_left @ rome_right.T)


# --- the editors on tiny models --------------------------------------------------------------------


def test_template_keys_of_every_layer_from_one_pass_are_the_same_tensors(tiny_model, cache):
    rb = prepared_batch(tiny_model, REQUEST, get_editor("r-rome").config_for(tiny_model), cache)
    alone = [template_keys(tiny_model, rb, layer) for layer in range(tiny_model.num_layers)]
    reuse = UnchangedWeights()
    together = [template_keys(tiny_model, rb, layer, reuse) for layer in range(tiny_model.num_layers)]
    assert all(torch.equal(a, b) for a, b in zip(alone, together))


@pytest.mark.parametrize("name", ["tiny_gpt2", "tiny_llama"])
@pytest.mark.parametrize("editor_name", ["r-rome", "rome"])
def test_edit_matrix_maps_the_key_to_v_star(request, name, editor_name, cache):
    """R-ROME: W' k* = v*. ROME: W' k_bare = v* (the bare prompt's key). Both: without mom2
    adjustment u = k*, so delta W leaves every input orthogonal to k* alone (this fails for a
    wrong u, which the first check alone would not see)."""
    handle = request.getfixturevalue(name)
    editor = get_editor(editor_name, cache=cache, **FEW_STEPS)
    rb = prepared_batch(handle, REQUEST, editor.config_for(handle), cache)
    keys = template_keys(handle, rb, 1)
    key = mean_key(keys) if editor_name == "r-rome" else keys[0]
    k_star = mean_key(keys)
    other = torch.randn(len(k_star), generator=torch.Generator().manual_seed(0))
    other = other - (other @ k_star) / (k_star @ k_star) * k_star  # orthogonal to k* = u
    module = handle.adapter.edit_module(handle.model, 1)
    before, before_other = module(key), module(other)
    with editor.edited(handle, [REQUEST], 1) as result:
        after, after_other = module(key), module(other)
    v_star = result.edits[0].value
    assert float((after - v_star).norm() / v_star.norm()) < 1e-3
    assert float((before - v_star).norm() / v_star.norm()) > 1e-3  # the edit did something
    torch.testing.assert_close(after_other, before_other, rtol=1e-4, atol=1e-5)


def test_emmet_one_request_lambda_zero_adds_the_block_residual_at_its_key(tiny_llama, cache, monkeypatch,
                                                                          tmp_path):
    """EasyEdit's EMMET: z is a block output; with one request and lambda 0 the edit matrix maps its
    key (1/2 bare + 1/2 prefixed mean) to W k + (z - z_before)."""
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    editor = get_editor("emmet", cache=cache, emmet_lambda=0.0, clamp_norm_factor=4.0,
                        mom2_n_samples=20, **FEW_STEPS)
    layer = 2
    rb = prepared_batch(tiny_llama, REQUEST, editor.config_for(tiny_llama), cache)
    keys = template_keys(tiny_llama, rb, layer)
    key = (keys[0] + keys[1:].mean(0)) / 2
    module = tiny_llama.adapter.edit_module(tiny_llama.model, layer)
    block_out = at_subject(tiny_llama, rb, tiny_llama.adapter.block(tiny_llama.model, layer),
                           inputs=False, rows=1)[0]
    before = module(key)
    with editor.edited(tiny_llama, [REQUEST], layer) as result:
        after = module(key)
    edit = result.edits[0]
    torch.testing.assert_close(edit.value_before, block_out)
    torch.testing.assert_close(after - before, edit.value - edit.value_before, rtol=1e-3, atol=1e-4)
    assert float((edit.value - edit.value_before).norm()) > 1e-3


@pytest.mark.parametrize("editor_name", sorted(EDITORS))
def test_edited_restores_every_parameter_bit_for_bit(tiny_model, editor_name, cache, monkeypatch, tmp_path):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    saved = weights(tiny_model)
    editor = get_editor(editor_name, cache=cache, mom2_n_samples=20, **FEW_STEPS)
    with editor.edited(tiny_model, [REQUEST], 2) as result:
        edited_layers = set(result.layers)
        changed = {name for name, t in tiny_model.model.state_dict().items()
                   if not torch.equal(t, saved[name])}
        assert changed, "the edit changed nothing"
        with pytest.raises(RuntimeError, match="inside"):
            with editor.edited(tiny_model, [REQUEST], 3):
                raise RuntimeError("raised inside the body")
    assert len(changed) == len(edited_layers)
    assert_same_weights(tiny_model, saved)


SECOND = EditRequest(case_id="1", prompt="The capital of Italy is", subject="Italy",
                     target_new="Paris", target_old="Rome")


@pytest.mark.parametrize("editor_name", sorted(EDITORS))
def test_compute_is_pure_and_single_step_edits_copy_nothing(tiny_llama, editor_name, cache,
                                                           monkeypatch, tmp_path):
    """compute leaves every weight as it was; one step (one request, or a one-layer window) is
    computed without touching the weights, so without a snapshot; several steps (requests in
    sequence, a window of layers) run inside one snapshot."""
    from goldenlayers.editing import restore

    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    editor = get_editor(editor_name, cache=cache, mom2_n_samples=20, **FEW_STEPS)
    saved = weights(tiny_llama)
    snapshots = []
    original = restore.snapshot  # compute's several steps run in restore.preserved
    monkeypatch.setattr(restore, "snapshot", lambda *args: snapshots.append(args) or original(*args))
    single = editor.step_count(tiny_llama, [REQUEST], 2) == 1
    result = editor.compute(tiny_llama, [REQUEST], 2)
    assert result.updates and len(snapshots) == (0 if single else 1)
    assert_same_weights(tiny_llama, saved)
    editor.compute(tiny_llama, [REQUEST, SECOND], 2)
    assert_same_weights(tiny_llama, saved)
    with editor.edited(tiny_llama, [REQUEST], 2) as kept:  # the same math, applied in one place
        for update in kept.updates:
            assert torch.allclose(update.delta(), next(u for u in result.updates
                                                       if u.layer == update.layer).delta())


def test_absent_subject_is_a_clear_error_and_changes_nothing(tiny_gpt2, cache):
    saved = weights(tiny_gpt2)
    bad = types.SimpleNamespace(case_id="x1", prompt="The capital of France is", subject="Germany",
                                target_new="Berlin")
    with pytest.raises(EditError, match=r"request x1 .*'Germany' does not occur"):
        get_editor("r-rome", cache=cache, **FEW_STEPS).apply(tiny_gpt2, [REQUEST, bad], 1)
    assert_same_weights(tiny_gpt2, saved)  # the first request's edit was undone too


def test_non_finite_loss_names_the_request_and_changes_nothing(tiny_llama, cache):
    saved = weights(tiny_llama)
    norm = tiny_llama.model.get_submodule(tiny_llama.adapter.final_norm)
    with trace({"norm": norm}, edit_output=lambda _, out: out * float("nan")):
        with pytest.raises(EditError, match=r"request 0 .*loss is not finite"):
            get_editor("r-rome", cache=cache, **FEW_STEPS).apply(tiny_llama, [REQUEST], 1)
    assert_same_weights(tiny_llama, saved)


def test_near_zero_denominator_names_the_request(tiny_gpt2, cache):
    saved = weights(tiny_gpt2)
    editor = get_editor("rome", cache=cache, denominator_tol=2.0, **FEW_STEPS)  # |cos| <= 1 < 2
    with pytest.raises(EditError, match=r"request 0 .*near-zero denominator"):
        editor.apply(tiny_gpt2, [REQUEST], 1)
    assert_same_weights(tiny_gpt2, saved)


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def test_fast_and_plain_value_optimisation_agree(preset, cache):
    handle = load_model(preset, dtype=torch.float64)  # no float rounding for Adam to amplify
    results = [get_editor("r-rome", cache=cache, fast=fast, **FEW_STEPS).compute(handle, [REQUEST], 2)
               for fast in (True, False)]
    fast, plain = (r.edits[0] for r in results)
    assert fast.losses == pytest.approx(plain.losses, rel=1e-6)
    torch.testing.assert_close(fast.value - fast.value_before, plain.value - plain.value_before,
                               rtol=0, atol=1e-4)
    assert float((fast.value - fast.value_before).norm()) > 1e-3


def test_sequential_rome_sums_its_rank_one_updates(tiny_llama, cache):
    other = EditRequest(case_id="1", prompt="Apple A5 was created by", subject="Apple A5",
                        target_new="Google")
    saved = weights(tiny_llama)
    layer = 2
    original = tiny_llama.adapter.edit_weight_out_in(tiny_llama.model, layer).detach().clone()
    with get_editor("r-rome", cache=cache, **FEW_STEPS).edited(tiny_llama, [REQUEST, other], layer) as result:
        now = tiny_llama.adapter.edit_weight_out_in(tiny_llama.model, layer).detach()
        assert result.updates[0].rank == 2
        torch.testing.assert_close(now.double() - original.double(), result.updates[0].delta(),
                                   rtol=1e-4, atol=1e-6)
    assert_same_weights(tiny_llama, saved)


def test_memit_edits_its_window_and_moves_the_residual_toward_z(tiny_llama, cache, monkeypatch, tmp_path):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    editor = get_editor("memit", cache=cache, window=3, mom2_n_samples=20, mom2_update_weight=1.0,
                        **FEW_STEPS)
    assert editor.layers_for(tiny_llama, 3) == (1, 2, 3)
    assert editor.layers_for(tiny_llama, 1) == (0, 1)
    with editor.edited(tiny_llama, [REQUEST], 3) as result:
        z, z_before = result.edits[0].value, result.edits[0].value_before
        rb = prepared_batch(tiny_llama, REQUEST, editor.config_for(tiny_llama), cache)
        block = tiny_llama.adapter.block(tiny_llama.model, 3)
        z_now = at_subject(tiny_llama, rb, block, inputs=False, rows=1)[0]
    assert [u.layer for u in result.updates] == [1, 2, 3]
    assert float((z_now - z).norm()) < 0.5 * float((z_before - z).norm())


# --- configs ---------------------------------------------------------------------------------------


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown R?RomeConfig key 'v_rl'.*v_lr"):
        get_editor("r-rome", v_rl=0.1)
    with pytest.raises(ConfigError, match="unknown RomeConfig key 'emmet_lambda'"):
        RomeConfig.from_dict({"emmet_lambda": 0.1})


def test_r_rome_key_options_are_exclusive_and_default_as_the_reference():
    config = RRomeConfig()
    assert (config.enable_prompt_keys, config.enable_random_prefix_keys) == (False, True)
    with pytest.raises(ConfigError, match="exactly one of enable_prompt_keys"):
        get_editor("r-rome", enable_prompt_keys=True)


def test_overrides_from_strings_are_typed_and_validated():
    parsed = EmmetConfig.from_overrides(["v_lr=0.1", "v_num_grad_steps=7", "fast=false",
                                         "mom2_update_weight=1_000"])
    assert parsed == {"v_lr": 0.1, "v_num_grad_steps": 7, "fast": False, "mom2_update_weight": 1000.0}
    with pytest.raises(ConfigError, match="v_num_grad_steps expects a int"):
        RomeConfig.from_overrides(["v_num_grad_steps=many"])
    with pytest.raises(ConfigError, match="v_lr must be positive"):
        RomeConfig(v_lr=0.0)
    with pytest.raises(ConfigError, match="'v_lr' is not key=value"):
        RomeConfig.from_overrides(["v_lr"])


def test_defaults_follow_the_models_family_then_overrides(tiny_gpt2, tiny_llama):
    gpt2, llama = (get_editor("rome").config_for(handle) for handle in (tiny_gpt2, tiny_llama))
    assert (gpt2.v_num_grad_steps, gpt2.v_weight_decay) == (20, 0.5)  # as EasyEdit's gpt2-xl
    assert (llama.v_num_grad_steps, llama.v_weight_decay) == (25, 1e-3)  # as EasyEdit's llama-7b
    assert get_editor("rome", v_num_grad_steps=3).config_for(tiny_llama).v_num_grad_steps == 3
    assert (model_family("llama", "smollm2-135m"), model_family("gemma3-multimodal")) == ("smollm2", "gemma")
    smollm2 = resolve(RRomeConfig, "r-rome", "default", "smollm2", {})
    assert (smollm2.v_num_grad_steps, smollm2.v_lr) == (15, 1.0)  # tuned on SmolLM2 (profiles.py)
    emmet = resolve(EmmetConfig, "emmet", "default", "gpt2", {})
    assert (emmet.clamp_norm_factor, emmet.mom2_update_weight, emmet.emmet_lambda) == (0.75, 10_000.0, 0.1)
    with pytest.raises(ConfigError, match="no editor defaults for architecture 'mamba'"):
        model_family("mamba")


# --- context templates and covariance -------------------------------------------------------------


def test_templates_are_seeded_cached_and_start_with_the_bare_prompt(tiny_llama, monkeypatch):
    cache = EditCache()
    first = context_templates(tiny_llama, 3, 6, seed=0, cache=cache)
    assert first[0] == "" and len(first) == 4
    assert all(t.endswith(". ") and "{" not in t for t in first[1:])
    assert context_templates(tiny_llama, 3, 6, seed=0) == first  # same seed, no cache: same texts
    from goldenlayers.editing import templates

    monkeypatch.setattr(templates, "sample_prefixes", lambda *a: pytest.fail("not cached"))
    assert context_templates(tiny_llama, 3, 6, seed=0, cache=cache) is first


def test_second_moment_counts_texts_is_the_mean_outer_product_and_cached_on_disk(tiny_gpt2, monkeypatch,
                                                                                 tmp_path):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    texts = ["The cat sat on the mat, and then it slept all day.", "A second, longer text about nothing in particular at all.",
             "A third text that the sample of two texts leaves out."]
    monkeypatch.setattr(covariance, "corpus_texts", lambda: texts)
    moment = covariance.second_moment(tiny_gpt2, 1, 2, 8, EditCache())  # 2 texts, 8 tokens each
    ids = [tiny_gpt2.tokenizer(t)["input_ids"][:8] for t in texts[:2]]
    batch = tiny_gpt2.batch([tiny_gpt2.tokenizer.decode(i) for i in ids])
    assert batch.attention_mask.sum() == 16
    module = tiny_gpt2.adapter.edit_module(tiny_gpt2.model, 1)
    with trace({"k": module}, capture_inputs=True) as record:
        hidden_states(tiny_gpt2, batch)
    keys = record.inputs["k"][batch.attention_mask.bool()]
    torch.testing.assert_close(moment.matrix, keys.T @ keys / len(keys), rtol=1e-4, atol=1e-6)
    assert (moment.n_texts, moment.n_tokens) == (2, 16)
    files = list((tmp_path / "stats").rglob("*"))
    assert [f.name for f in files if f.is_file()] == ["layer001-2texts-8tokens.safetensors"]
    monkeypatch.setattr(covariance, "compute_second_moments", lambda *a: pytest.fail("recomputed"))
    again = covariance.second_moment(tiny_gpt2, 1, 2, 8, EditCache())
    assert torch.equal(again.matrix, moment.matrix) and again.n_texts == 2
    key = keys[0]
    torch.testing.assert_close(moment.matrix @ moment.solve(key).float(), key.float(), rtol=1e-3, atol=1e-4)


STATS_TEXTS = ["The cat sat on the mat, and then it slept all day long.", "A second text.",
               "A third text, about the weather in a town that nobody has heard of."]


def test_key_statistics_of_several_layers_come_from_one_pass_equal_to_each_layers_own(tiny_model):
    base = tiny_model.model.get_submodule(tiny_model.adapter.base_model)
    passes = []
    hook = base.register_forward_pre_hook(lambda *_: passes.append(1))
    try:
        alone = {layer: covariance.compute_second_moment(tiny_model, layer, 3, 12, STATS_TEXTS)
                 for layer in (0, 1, 2)}
        assert len(passes) == 3
        passes.clear()
        together = covariance.compute_second_moments(tiny_model, [2, 0, 1], 3, 12, STATS_TEXTS)
        assert len(passes) == 1 and list(together) == [2, 0, 1]
        d_in = tiny_model.adapter.edit_weight_out_in(tiny_model.model, 0).shape[1]
        passes.clear()  # room for two layers' sums: layers 0-1, then 2
        grouped = covariance.compute_second_moments(tiny_model, [0, 1, 2], 3, 12, STATS_TEXTS,
                                                    memory_bytes=2 * d_in * d_in * 8)
        assert len(passes) == 2
    finally:
        hook.remove()
    for layer, moment in alone.items():
        for other in (together[layer], grouped[layer]):
            assert torch.equal(other.matrix, moment.matrix)  # bit for bit
            assert (other.n_tokens, other.n_texts) == (moment.n_tokens, moment.n_texts)
    assert not torch.equal(alone[0].matrix, alone[1].matrix)


def test_precomputed_statistics_are_the_ones_edits_read(tiny_llama, monkeypatch, tmp_path):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    monkeypatch.setattr(covariance, "corpus_texts", lambda: STATS_TEXTS)
    memit = get_editor("memit", window=2, mom2_n_samples=3, mom2_text_tokens=12)
    assert memit.statistics_layers(tiny_llama, 2) == (1, 2)
    assert get_editor("r-rome").statistics_layers(tiny_llama, 2) == ()  # no C in its update
    assert get_editor("rome", mom2_adjustment=True).statistics_layers(tiny_llama, 2) == (2,)
    calls = []
    compute = covariance.compute_second_moments
    monkeypatch.setattr(covariance, "compute_second_moments",
                        lambda handle, layers, *a, **k: calls.append(list(layers))
                        or compute(handle, layers, *a, **k))
    memit.precompute_statistics(tiny_llama, [1, 2, 3])
    assert calls == [[0, 1, 2, 3]]  # the windows' layers, in one call
    names = sorted(f.name for f in (tmp_path / "stats").rglob("*.safetensors"))
    assert names == [f"layer00{layer}-3texts-12tokens.safetensors" for layer in range(4)]
    get_editor("memit", window=2, mom2_n_samples=3, mom2_text_tokens=12, **FEW_STEPS).compute(
        tiny_llama, [REQUEST], 3)  # a fresh editor: its statistics come from disk
    assert calls == [[0, 1, 2, 3]]


# --- slow: a real model ------------------------------------------------------------------------------


@pytest.mark.slow
def test_r_rome_edits_smollm2_counterfact(smollm2):
    from goldenlayers.data import load_dataset

    requests = load_dataset("counterfact").requests[:8]
    editor = get_editor("r-rome")
    saved = weights(smollm2)
    successes = []
    for request in requests:
        with editor.edited(smollm2, [request], 10):
            answer = greedy_continuations(smollm2, [request.prompt], 4)[0]
        successes.append(answer.strip().startswith(request.target_new.strip()))
    assert sum(successes) >= 7, successes
    assert_same_weights(smollm2, saved)
