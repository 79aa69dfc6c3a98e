"""Reference tests: each editor's weight change equals an independent float64 implementation.

The reference below is written from the papers' formulas and EasyEdit's algorithm (ROME's
compute_u/compute_v, R-ROME's, EMMET's and MEMIT's compute_z/compute_ks and update rules), on the
Hugging Face model itself with its own hooks: one row per forward pass (no padding), module names
written out per architecture, the key statistics from the corpus texts. It uses nothing of
goldenlayers.editing but the public editor API (the edit is measured as the change of the weight
under ``Editor.edited``) and the context-template strings the editor sampled (input data, not
the method under test).

    rank one (ROME, R-ROME)  u = C^-1 k*;  delta W = (v* - W k - b) u^T / (u . k)
                             k = k_bare (ROME's code) or k* (R-ROME);  k* = mean over templates
    EMMET                    delta W = R D^-1 K^T C0^-1,  D = K^T C0^-1 K + lambda I,  C0 = w C
    MEMIT                    delta W = R K^T (w C + K K^T)^-1
    EMMET, MEMIT             z at the block output of the window's top layer; per layer, lowest
                             first: R = (z - z_now) / layers left; K = (k_bare + mean prefixed) / 2

Each test fails when a piece is wrong (checked by hand: u replaced by a random unit vector, the
covariance dropped, the key read one token early).
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from goldenlayers.data import load_corpus_texts
from goldenlayers.data.records import EditRequest
from goldenlayers.editing import EditCache, get_editor
from goldenlayers.editing.templates import context_templates
from goldenlayers.models import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

REQUESTS = (
    EditRequest(case_id="0", prompt="The mother tongue of Danielle Darrieux is",
                subject="Danielle Darrieux", target_new="English", target_old="French"),
    EditRequest(case_id="1", prompt="Apple A5 was created by", subject="Apple A5",
                target_new="Google", target_old="Apple"),
)
# Small, so the test is quick; clamp 0.75 on the block output is reached on tiny models.
SETTINGS = dict(n_context_templates=3, context_template_length=6, v_num_grad_steps=6, v_lr=0.5,
                v_weight_decay=0.5, kl_factor=0.0625, v_loss_stop=0.05, mom2_n_samples=40,
                mom2_text_tokens=32)
# (block, edit matrix, stored transposed (Conv1D)) by the config's model_type
MODULES = {
    "gpt2": ("transformer.h.{}", "transformer.h.{}.mlp.c_proj", True),
    "llama": ("model.layers.{}", "model.layers.{}.mlp.down_proj", False),
    "gemma3_text": ("model.layers.{}", "model.layers.{}.mlp.down_proj", False),
}
TOLERANCE = 1e-6  # relative Frobenius difference of delta W


# --- the reference ---------------------------------------------------------------------------------


class Reference:
    def __init__(self, handle, templates: tuple[str, ...], settings: dict):
        self.model, self.tok = handle.model, handle.tokenizer
        self.block_name, self.matrix_name, self.conv1d = MODULES[self.model.config.model_type]
        self.templates = templates  # "" (the bare prompt) first
        self.s = settings

    def module(self, template: str, layer: int):
        return self.model.get_submodule(template.format(layer))

    def weight(self, layer: int) -> torch.Tensor:
        """W (d_out, d_in) of the edit matrix, a copy."""
        w = self.model.get_parameter(self.matrix_name.format(layer) + ".weight").detach().clone()
        return w.T if self.conv1d else w

    def bias(self, layer: int) -> torch.Tensor | float:
        b = getattr(self.module(self.matrix_name, layer), "bias", None)
        return 0.0 if b is None else b.detach()

    def ids(self, text: str) -> list[int]:
        return self.tok(text)["input_ids"]

    def subject_index(self, prefix: str, request: EditRequest) -> int:
        """The last token of the subject: the tokens of the text up to the subject's end, less one."""
        end = request.prompt.index(request.subject) + len(request.subject)
        return len(self.ids((prefix + request.prompt)[: len(prefix) + end].rstrip())) - 1

    def forward(self, ids: list[int]):
        return self.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]  # (T, V)

    # keys ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def keys(self, request: EditRequest, layer: int) -> torch.Tensor:
        """(n_templates, d_in): the edit matrix's input at the subject in each template."""
        rows = []
        for prefix in self.templates:
            with captured_input(self.module(self.matrix_name, layer)) as got:
                self.forward(self.ids(prefix + request.prompt))
            rows.append(got[0][0, self.subject_index(prefix, request)])
        return torch.stack(rows)

    @torch.no_grad()
    def block_output(self, request: EditRequest, layer: int) -> torch.Tensor:
        with captured_output(self.module(self.block_name, layer)) as got:
            self.forward(self.ids(request.prompt))
        return got[0][0, self.subject_index("", request)]

    @torch.no_grad()
    def second_moment(self, layer: int) -> torch.Tensor:
        """C = E[k k^T] over every token of the corpus's first n texts, each cut to T tokens."""
        total, count, texts = 0.0, 0, 0
        for text in load_corpus_texts():
            ids = self.ids(text)[: self.s["mom2_text_tokens"]]
            if len(ids) < 2:
                continue
            with captured_input(self.module(self.matrix_name, layer)) as got:
                self.forward(ids)
            k = got[0][0]  # (T, d_in)
            total, count, texts = total + k.T @ k, count + len(k), texts + 1
            if texts == self.s["mom2_n_samples"]:
                break
        return total / count

    # v* / z: the optimisation of compute_v / compute_z -----------------------------------------------

    def optimise(self, request: EditRequest, site_name: str, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(v0, v0 + delta): delta added at ``site`` at the subject's last token in every template."""
        s = self.s
        target = self.tok(" " + request.target_new, add_special_tokens=False)["input_ids"]
        rows = []
        for prefix in self.templates:
            prompt = self.ids(prefix + request.prompt)
            rows.append((prompt + target[:-1], self.subject_index(prefix, request), len(prompt) - 1))
        kl_text = request.subject + " is a"
        kl_ids = self.ids(kl_text)
        kl_index = len(self.ids(request.subject)) - 1
        site = self.module(site_name, layer)
        delta = torch.zeros(self.model.config.hidden_size, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=s["v_lr"])
        v0, kl0 = None, None
        for step in range(s["v_num_grad_steps"]):
            nll = []
            for i, (ids, subject, first) in enumerate(rows):
                with added(site, subject, delta) as seen:
                    log_p = torch.log_softmax(self.forward(ids), -1)
                if v0 is None and i == 0:
                    v0 = seen[0].detach().clone()
                positions = torch.arange(first, first + len(target))
                nll.append(-log_p[positions, torch.tensor(target)].mean())
            with added(site, kl_index, delta):
                kl_log_p = torch.log_softmax(self.forward(kl_ids)[kl_index], -1)
            if kl0 is None:
                kl0 = kl_log_p.detach()
            kl = (kl_log_p.exp() * (kl_log_p - kl0)).sum()  # KL(p_now || p_before)
            loss = (torch.stack(nll).mean() + s["kl_factor"] * kl
                    + s["v_weight_decay"] * delta.norm() / v0.norm() ** 2)
            if loss.item() < s["v_loss_stop"] or step == s["v_num_grad_steps"] - 1:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                bound = s["clamp_norm_factor"] * v0.norm()
                if delta.norm() > bound:
                    delta.mul_(bound / delta.norm())
        return v0, v0 + delta.detach()

    # the updates ------------------------------------------------------------------------------------

    def rank_one(self, request: EditRequest, layer: int, variant: str) -> torch.Tensor:
        """variant: "rome" (ROME's code: u from k*, k = k_bare), "r-rome" (k* for both) or
        "prompt-keys" (R-ROME's enable_prompt_keys: k_bare for both)."""
        keys = self.keys(request, layer)
        k_star = keys.mean(0)
        u_key = keys[0] if variant == "prompt-keys" else k_star
        u = torch.linalg.solve(self.second_moment(layer), u_key)
        k = k_star if variant == "r-rome" else keys[0]
        _, v_star = self.optimise(request, self.matrix_name, layer)
        residual = v_star - (self.weight(layer) @ k + self.bias(layer))
        return torch.outer(residual, u) / (u @ k)

    def window(self, requests, layers: list[int], method: str) -> dict[int, torch.Tensor]:
        """delta W per layer for EMMET or MEMIT; the model is edited as it goes, then restored."""
        top = layers[-1]
        z = torch.stack([self.optimise(r, self.block_name, top)[1] for r in requests], 1)
        moments = {layer: self.second_moment(layer) for layer in layers}
        deltas, saved = {}, {}
        try:
            for i, layer in enumerate(layers):
                keys = torch.stack([self.kinds_key(r, layer) for r in requests], 1)  # (d_in, E)
                now = torch.stack([self.block_output(r, top) for r in requests], 1)
                residual = (z - now) / (len(layers) - i)
                deltas[layer] = self.solve(residual, keys, moments[layer], method)
                saved[layer] = self.add(layer, deltas[layer])
        finally:
            for layer, original in saved.items():
                self.set_weight(layer, original)
        return deltas

    def kinds_key(self, request: EditRequest, layer: int) -> torch.Tensor:
        keys = self.keys(request, layer)
        return (keys[0] + keys[1:].mean(0)) / 2

    def solve(self, residual, keys, c, method: str) -> torch.Tensor:
        w = self.s["mom2_update_weight"]
        if method == "memit":
            return residual @ torch.linalg.solve(w * c + keys @ keys.T, keys).T
        c0_inv_k = torch.linalg.solve(w * c, keys)
        d = keys.T @ c0_inv_k + self.s["emmet_lambda"] * torch.eye(keys.shape[1], dtype=keys.dtype)
        return residual @ torch.linalg.solve(d, c0_inv_k.T)

    @torch.no_grad()
    def add(self, layer: int, delta: torch.Tensor) -> torch.Tensor:
        original = self.weight(layer)
        self.set_weight(layer, original + delta)
        return original

    @torch.no_grad()
    def set_weight(self, layer: int, w: torch.Tensor) -> None:
        p = self.model.get_parameter(self.matrix_name.format(layer) + ".weight")
        p.copy_(w.T if self.conv1d else w)


def _hidden(out):
    return out[0] if isinstance(out, tuple) else out


@contextmanager
def captured_input(module):
    got = []
    handle = module.register_forward_pre_hook(lambda m, args: got.append(args[0].detach()))
    try:
        yield got
    finally:
        handle.remove()


@contextmanager
def captured_output(module):
    got = []
    handle = module.register_forward_hook(lambda m, i, out: got.append(_hidden(out).detach()))
    try:
        yield got
    finally:
        handle.remove()


@contextmanager
def added(module, index: int, delta: torch.Tensor):
    """Adds delta to the module's output at token ``index``; yields the output there before."""
    seen = []

    def hook(m, i, out):
        hidden = _hidden(out)
        seen.append(hidden[0, index])
        shift = torch.zeros_like(hidden)
        shift[0, index] = delta
        hidden = hidden + shift
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden
    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


# --- the tests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def model64(request):
    return load_model(request.param, dtype=torch.float64)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))  # no key statistics from other runs


def ours(handle, editor_name: str, requests, layer: int, settings: dict) -> tuple[dict, tuple]:
    """Our editor's delta W per edited layer (the change of the weight under ``edited``) and the
    context templates it used."""
    cache = EditCache()
    editor = get_editor(editor_name, cache=cache, **settings)
    templates = context_templates(handle, settings["n_context_templates"],
                                  settings["context_template_length"], 0, cache)
    reference = Reference(handle, templates, {})
    with editor.edited(handle, list(requests), layer) as result:
        after = {layer_: reference.weight(layer_) for layer_ in result.layers}
    return {layer_: w - reference.weight(layer_) for layer_, w in after.items()}, templates


def relative(ours_delta: torch.Tensor, reference_delta: torch.Tensor) -> float:
    return float((ours_delta - reference_delta).norm() / reference_delta.norm())


@pytest.mark.parametrize("editor_name, variant, extra", [
    ("rome", "rome", {}), ("r-rome", "r-rome", {}),
    ("r-rome", "prompt-keys", dict(enable_prompt_keys=True, enable_random_prefix_keys=False))])
def test_rank_one_editors_equal_the_reference(model64, editor_name, variant, extra, isolated):
    settings = dict(SETTINGS, clamp_norm_factor=4.0, mom2_adjustment=True, **extra)
    layer = 2
    deltas, templates = ours(model64, editor_name, REQUESTS[:1], layer, settings)
    expected = Reference(model64, templates, settings).rank_one(REQUESTS[0], layer, variant)
    assert relative(deltas[layer], expected) < TOLERANCE


@pytest.mark.parametrize("editor_name, window", [("emmet", 1), ("emmet", 2), ("memit", 2)])
def test_batch_editors_equal_the_reference(model64, editor_name, window, isolated):
    weight = 10.0 if editor_name == "emmet" else 20.0
    settings = dict(SETTINGS, clamp_norm_factor=0.75, mom2_update_weight=weight, window=window)
    if editor_name == "emmet":
        settings["emmet_lambda"] = 0.1
    layer = 2  # not the last block: its output at the subject reaches no scored position
    deltas, templates = ours(model64, editor_name, REQUESTS, layer, settings)
    layers = list(range(layer - window + 1, layer + 1))
    expected = Reference(model64, templates, settings).window(REQUESTS, layers, editor_name)
    assert sorted(deltas) == layers
    for layer_ in layers:
        assert relative(deltas[layer_], expected[layer_]) < TOLERANCE, f"layer {layer_}"
