"""Locate the golden layer: LGA (default), causal tracing (CMA) and brute force, one result type.

    scores = get_locator("lga").locate(handle, proxy_requests)   # -> LayerScores
    scores.golden_layer, scores.top_k, scores.excluded, scores.scores, scores.stability

A new locator is one module here: a ``Locator`` subclass with a settings dataclass, decorated
``@register`` (``base.py``), imported below. ``option_names(method)`` lists the options a method
takes; ``typed_options(settings_class, ["key=value"])`` reads them from the command line.

LGA's readings (``readings``) recompute a golden layer from stored gradient products:

    products = compute_products(handle, proxy_requests)          # one pass per (weights, old answer)
    {r.name: reading_layer(products_for(products, r), r) for r in all_readings()}
"""

# Importing the method modules registers their locators, in this order (the report's rows).
from goldenlayers.locate import lga, causal_tracing, brute_force, staged  # noqa: F401, I001
from goldenlayers.locate.base import (LOCATORS, LayerScores, LayerStability, LocateError, Locator,
                                      get_locator, locator_class, option_names, register,
                                      study_locators, typed_options)
from goldenlayers.locate.brute_force import BruteForceSettings
from goldenlayers.locate.causal_tracing import CMASettings
from goldenlayers.locate.fences import excluded_layers, tukey_fences
from goldenlayers.locate.lga import LGASettings, compute_products
from goldenlayers.locate.readings import (DEFAULT_READING, GradientProducts, LGAReading,
                                          all_readings, layer_stability, products_for,
                                          reading_layer, reading_scores)

__all__ = ["DEFAULT_READING", "LOCATORS", "BruteForceSettings", "CMASettings",
           "GradientProducts", "LGAReading", "LGASettings", "LayerScores", "LayerStability",
           "LocateError", "Locator", "all_readings", "compute_products", "excluded_layers",
           "get_locator", "layer_stability", "locator_class", "option_names", "products_for",
           "reading_layer", "reading_scores", "register", "study_locators", "tukey_fences",
           "typed_options"]
