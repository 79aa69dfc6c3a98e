"""EasyEdit-compatible editing metrics, the Overall score, and the t-tests (METHOD.md, Metrics)."""

from goldenlayers.evaluate.fluency import FLUENCY_PROCEDURES, n_gram_entropy, word_tokens
from goldenlayers.evaluate.metrics import (ALIAS_RULES, DEFAULT_METRICS, HIGHER_IS_BETTER,
                                           LOWER_IS_BETTER, METRICS, Evaluation, PreEditState,
                                           RequestMetrics, compute_pre_edit, evaluate,
                                           higher_is_better, supports, token_accuracy)
from goldenlayers.evaluate.overall import NORMALISATIONS, OverallScores, min_max, overall_score
from goldenlayers.evaluate.statistics import TTestResult, t_test

__all__ = [
    "ALIAS_RULES", "DEFAULT_METRICS", "FLUENCY_PROCEDURES", "HIGHER_IS_BETTER", "LOWER_IS_BETTER",
    "METRICS", "NORMALISATIONS", "Evaluation", "OverallScores", "PreEditState", "RequestMetrics",
    "TTestResult", "compute_pre_edit", "evaluate", "higher_is_better", "min_max", "n_gram_entropy",
    "overall_score", "supports", "t_test", "token_accuracy", "word_tokens",
]
