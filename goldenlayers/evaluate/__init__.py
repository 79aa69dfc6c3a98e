"""EasyEdit-compatible editing metrics, the Overall score, and the t-tests (docs/method.md,
"The metrics" and "The statistics")."""

from goldenlayers.evaluate.fluency import FLUENCY_PROCEDURES, n_gram_entropy, word_tokens
from goldenlayers.evaluate.metrics import (ALIAS_RULES, DEFAULT_METRICS, HIGHER_IS_BETTER,
                                           METRICS, OVERALL, TEACHER_FORCED,
                                           Evaluation, PreEditState, RequestMetrics,
                                           compute_pre_edit, evaluate, higher_is_better,
                                           supports, token_accuracy)
from goldenlayers.evaluate.overall import NORMALISATIONS, OverallScores, min_max, overall_score
from goldenlayers.evaluate.statistics import (Interval, PairedComparison, TTestResult,
                                              bootstrap_interval, minimum_detectable_difference,
                                              paired_comparison, regret_interval, t_test)

__all__ = [
    "ALIAS_RULES", "DEFAULT_METRICS", "FLUENCY_PROCEDURES", "HIGHER_IS_BETTER", "Interval",
    "OVERALL", "PairedComparison", "TEACHER_FORCED", "bootstrap_interval", "higher_is_better",
    "minimum_detectable_difference", "paired_comparison", "METRICS", "NORMALISATIONS", "Evaluation",
    "OverallScores", "PreEditState", "RequestMetrics", "TTestResult", "compute_pre_edit", "evaluate",
    "min_max", "n_gram_entropy", "overall_score", "regret_interval", "supports", "t_test", "token_accuracy",
    "word_tokens",
]
