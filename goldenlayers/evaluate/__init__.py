"""EasyEdit-compatible editing metrics, the Overall score, and the t-tests (docs/method.md,
"The metrics" and "The statistics")."""

from goldenlayers.evaluate.fluency import n_gram_entropy, word_tokens
from goldenlayers.evaluate.metrics import (ALIAS_RULES, DEFAULT_METRICS, LOWER_IS_BETTER, METRICS,
                                           Evaluation, PreEditState, RequestMetrics,
                                           compute_pre_edit, evaluate, supports, token_accuracy)
from goldenlayers.evaluate.overall import NORMALISATIONS, OverallScores, min_max, overall_score
from goldenlayers.evaluate.statistics import TTestResult, t_test

__all__ = [
    "ALIAS_RULES", "DEFAULT_METRICS", "LOWER_IS_BETTER", "METRICS", "NORMALISATIONS", "Evaluation",
    "OverallScores", "PreEditState", "RequestMetrics", "TTestResult", "compute_pre_edit", "evaluate",
    "min_max", "n_gram_entropy", "overall_score", "supports", "t_test", "token_accuracy",
    "word_tokens",
]
