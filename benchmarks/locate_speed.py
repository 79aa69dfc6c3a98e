"""Wall time of LGA, causal tracing (CMA) and brute force (R-ROME, all layers) on one proxy set, and
LGA's peak memory beside a plain forward+backward and a variant that builds explicit gradients.

    python benchmarks/locate_speed.py                 # smollm2-135m, 16 CounterFact requests
    python benchmarks/locate_speed.py --bf-requests 16   # brute force on all 16, no scaling

Prints the figures and writes benchmarks/results/locate_speed.json. Brute force is timed on the first
--bf-requests of the proxy requests and scaled linearly to all of them (its cost is requests x layers
edits); the output says so. Memory on CPU is the peak of the C heap's bytes in use (glibc mallinfo2,
sampled) above the level at the start; on CUDA, the allocator's peak.

Targets (issue 5): LGA >= 50x faster than brute force and >= 5x faster than CMA; LGA's memory above
a plain forward and backward under 10% of the model's size.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from goldenlayers.app.locate_job import proxy_split
from goldenlayers.data import load_dataset
from goldenlayers.locate import get_locator
from goldenlayers.locate.lga import batch_inner_products, layer_sites, masked
from goldenlayers.locate.measure import measure
from goldenlayers.models import load_model
from goldenlayers.models.handle import target_nll
from goldenlayers.models.hooks import trace

RESULTS = Path(__file__).resolve().parent / "results" / "locate_speed.json"


# --- the three memory variants on one batch -------------------------------------------------------


def plain_forward_backward(handle, prompts, new, old) -> None:
    """The baseline: the same batch, loss and backward, with nothing captured."""
    batch = handle.batch(list(prompts) * 2, list(new) + list(old))
    embedding = handle.model.get_submodule(handle.adapter.embedding)
    with torch.enable_grad(), trace({"e": embedding}, edit_output=lambda _, o: o.requires_grad_(True)):
        target_nll(handle, batch).sum().backward()


def explicit_inner_products(handle, prompts, new, old) -> torch.Tensor:
    """The same scores by building each request's d_out x d_in gradient of every layer's edit matrix
    (G = D^T K from the captured keys and output gradients), one layer at a time. (B, L)"""
    b = len(prompts)
    batch = handle.batch(list(prompts) * 2, list(new) + list(old))
    sites = {name: module for name, (_, module) in layer_sites(handle, "edit-matrix").items()}
    embedding = handle.model.get_submodule(handle.adapter.embedding)
    with torch.enable_grad(), trace({"e": embedding}, edit_output=lambda _, o: o.requires_grad_(True)), \
            trace(sites, capture_inputs=True, capture_output_grads=True) as record:
        target_nll(handle, batch).sum().backward()
    out = torch.zeros(b, len(sites), dtype=torch.float64)
    for layer, name in enumerate(sites):
        keys = masked(record.inputs.pop(name), batch.attention_mask)  # (2B, T, d_in)
        grads = record.output_grads.pop(name)  # (2B, T, d_out)
        gradients = torch.einsum("btd,btk->bdk", grads, keys)  # (2B, d_out, d_in): explicit
        out[:, layer] = (gradients[:b].double() * gradients[b:].double()).sum(dim=(1, 2)).cpu()
    return out


def memory_comparison(handle, requests) -> dict:
    prompts = [r.prompt for r in requests]
    new, old = [r.target_new for r in requests], [r.target_old for r in requests]
    figures = {}
    for name, run in (("plain_forward_backward", plain_forward_backward),
                      ("lga", lambda *a: batch_inner_products(*a, "edit-matrix")),
                      ("explicit_gradients", explicit_inner_products)):
        run(handle, prompts[:2], new[:2], old[:2])  # warm up
        with measure(handle.device) as cost:
            value = run(handle, prompts, new, old)
        figures[name] = {"seconds": cost.seconds, "peak_memory_bytes": cost.peak_memory_bytes}
        if name == "lga":
            fast = value[0].cpu()
        if name == "explicit_gradients":
            figures["max_relative_difference_lga_vs_explicit"] = (
                ((fast - value).abs() / value.abs()).max().item())
    model_bytes = sum(p.numel() * p.element_size() for p in handle.model.parameters())
    extra = figures["lga"]["peak_memory_bytes"] - figures["plain_forward_backward"]["peak_memory_bytes"]
    figures.update(model_bytes=model_bytes, lga_extra_over_plain_bytes=extra,
                   lga_extra_over_plain_fraction_of_model=extra / model_bytes)
    return figures


# --- the three locators ---------------------------------------------------------------------------


def time_locators(handle, requests, bf_requests: int, cma_all: bool) -> dict:
    get_locator("lga").locate(handle, requests[:2])  # warm up
    lga = get_locator("lga").locate(handle, requests)
    lga_argmin = get_locator("lga", direction="argmin").locate(handle, requests)
    cma = get_locator("cma", known_only=not cma_all).locate(handle, requests)
    brute = get_locator("brute-force", editor="r-rome",
                        metrics=("rewrite_accuracy", "rephrase_accuracy", "locality"))
    search = brute.search(handle, requests[:bf_requests])
    scale = len(requests) / bf_requests
    traced = len(cma.per_request)
    return {
        "lga": {"seconds": lga.seconds, "peak_memory_bytes": lga.peak_memory_bytes,
                "golden_layer": lga.golden_layer, "top_k": lga.top_k, "excluded": lga.excluded,
                "scores": lga.scores, "argmin_golden_layer": lga_argmin.golden_layer},
        "cma": {"seconds": cma.seconds, "facts_traced": traced,
                "seconds_per_fact": cma.seconds / traced, "golden_layer": cma.golden_layer,
                "top_k": cma.top_k, "scores": cma.scores, "notes": cma.notes},
        "brute_force": {"editor": "r-rome", "requests_timed": bf_requests,
                        "seconds_measured": search.seconds, "seconds_scaled": search.seconds * scale,
                        "scaled": f"timed on {bf_requests} of {len(requests)} requests, x{scale:g}"
                        if scale != 1 else "not scaled",
                        "golden_layers": search.golden_layers(),
                        "layer_means": {m: search.layer_means(m) for m in search.metrics},
                        "notes": search.notes},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default="counterfact")
    parser.add_argument("--proxy", type=int, default=16)
    parser.add_argument("--bf-requests", type=int, default=4)
    parser.add_argument("--cma-all", action="store_true", help="trace all facts, not only known ones")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    handle = load_model(args.model, device=args.device)
    requests = proxy_split(load_dataset(args.data).requests, args.proxy, seed=0).proxy
    start = time.perf_counter()
    memory = memory_comparison(handle, requests)
    timings = time_locators(handle, requests, min(args.bf_requests, len(requests)), args.cma_all)
    lga_s = timings["lga"]["seconds"]
    result = {
        "model": handle.name, "data": args.data, "proxy_requests": len(requests),
        "device": str(handle.device), "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": os.getloadavg(), "torch": torch.__version__,
        "python": platform.python_version(), "benchmark_seconds": time.perf_counter() - start,
        "memory": memory, **timings,
        "ratios": {"brute_force_over_lga": timings["brute_force"]["seconds_scaled"] / lga_s,
                   "cma_over_lga": timings["cma"]["seconds"] / lga_s,
                   "cma_all_facts_estimate_over_lga":
                       timings["cma"]["seconds_per_fact"] * len(requests) / lga_s},
    }
    result["targets"] = {
        "lga_50x_faster_than_brute_force": result["ratios"]["brute_force_over_lga"] >= 50,
        "lga_5x_faster_than_cma": result["ratios"]["cma_over_lga"] >= 5,
        "lga_extra_memory_under_10pct_of_model": memory["lga_extra_over_plain_fraction_of_model"] < 0.10,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    report(result, args.out)


def report(result: dict, path: Path) -> None:
    mib = 2 ** 20
    m, r = result["memory"], result["ratios"]
    print(f"{result['model']}, {result['proxy_requests']} {result['data']} requests, "
          f"{result['device']}, {result['torch_threads']} threads, load {result['load_average_before'][0]:.1f}")
    print(f"LGA          {result['lga']['seconds']:8.1f} s   golden layer {result['lga']['golden_layer']} "
          f"(argmin: {result['lga']['argmin_golden_layer']}), excluded {result['lga']['excluded']}")
    print(f"CMA          {result['cma']['seconds']:8.1f} s   {result['cma']['facts_traced']} facts traced, "
          f"{result['cma']['seconds_per_fact']:.1f} s per fact, layer {result['cma']['golden_layer']}")
    print(f"brute force  {result['brute_force']['seconds_scaled']:8.1f} s   "
          f"({result['brute_force']['scaled']}), golden {result['brute_force']['golden_layers']}")
    print(f"ratios: brute force / LGA {r['brute_force_over_lga']:.0f}x, CMA / LGA {r['cma_over_lga']:.1f}x "
          f"(all {result['proxy_requests']} facts, estimated: {r['cma_all_facts_estimate_over_lga']:.1f}x)")
    print(f"memory peaks: plain fwd+bwd {m['plain_forward_backward']['peak_memory_bytes'] / mib:.1f} MiB, "
          f"LGA {m['lga']['peak_memory_bytes'] / mib:.1f} MiB, explicit gradients "
          f"{m['explicit_gradients']['peak_memory_bytes'] / mib:.1f} MiB; LGA above plain: "
          f"{m['lga_extra_over_plain_bytes'] / mib:.1f} MiB = "
          f"{100 * m['lga_extra_over_plain_fraction_of_model']:.2f}% of the model "
          f"({m['model_bytes'] / mib:.0f} MiB); LGA vs explicit max rel diff "
          f"{m['max_relative_difference_lga_vs_explicit']:.1e}")
    print(f"targets: {result['targets']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
