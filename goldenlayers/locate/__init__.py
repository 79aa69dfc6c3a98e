"""Locate the golden layer: LGA (default), causal tracing (CMA) and brute force, one result type.

    scores = get_locator("lga").locate(handle, proxy_requests)   # -> LayerScores
    scores.golden_layer, scores.top_k, scores.excluded, scores.scores, scores.stability

LGA's readings (``readings``) recompute a golden layer from stored gradient products:

    products = compute_products(handle, proxy_requests)          # one pass per (weights, old answer)
    {r.name: reading_layer(products_for(products, r), r) for r in all_readings()}
"""

# Importing the method modules registers their locators.
from goldenlayers.locate import brute_force, causal_tracing, lga, staged  # noqa: F401
from goldenlayers.locate.base import (LOCATORS, LayerScores, LayerStability, LocateError, Locator,
                                      get_locator)
from goldenlayers.locate.brute_force import BruteForceSettings
from goldenlayers.locate.causal_tracing import CMASettings
from goldenlayers.locate.fences import excluded_layers, golden_layer, rank_layers, tukey_fences
from goldenlayers.locate.lga import LGASettings, compute_products
from goldenlayers.locate.readings import (DEFAULT_READING, GradientProducts, LGAReading,
                                          all_readings, layer_stability, products_for,
                                          reading_layer, reading_scores)

__all__ = ["DEFAULT_READING", "LOCATORS", "BruteForceSettings", "CMASettings",
           "GradientProducts", "LGAReading", "LGASettings", "LayerScores", "LayerStability",
           "LocateError", "Locator", "all_readings", "compute_products",
           "excluded_layers", "get_locator", "golden_layer", "layer_stability", "products_for",
           "rank_layers", "reading_layer", "reading_scores", "tukey_fences"]
