"""Locate the golden layer: LGA (default), causal tracing (CMA) and brute force, one result type.

    scores = get_locator("lga").locate(handle, proxy_requests)   # -> LayerScores
    scores.golden_layer, scores.top_k, scores.excluded, scores.scores
"""

# Importing the method modules registers their locators.
from goldenlayers.locate import brute_force, causal_tracing, lga  # noqa: F401
from goldenlayers.locate.base import LOCATORS, LayerScores, LocateError, Locator, get_locator
from goldenlayers.locate.brute_force import BruteForceResult, BruteForceSettings, SampleOptimum
from goldenlayers.locate.causal_tracing import CMASettings
from goldenlayers.locate.fences import excluded_layers, golden_layer, rank_layers, tukey_fences
from goldenlayers.locate.lga import LGASettings

__all__ = ["LOCATORS", "BruteForceResult", "BruteForceSettings", "CMASettings", "LGASettings",
           "LayerScores", "LocateError", "Locator", "SampleOptimum", "excluded_layers",
           "get_locator", "golden_layer", "rank_layers", "tukey_fences"]
