"""Ranking and classifier metrics: pure functions over numpy arrays, one score per query.

This package imports nothing else of distilrel. Metric names (``ndcg@10``, ``esci_ndcg``, ...) are
parsed only in :mod:`distilrel.metrics.names`; NDCG is implemented only in
:mod:`distilrel.metrics.functions`.
"""

from __future__ import annotations

from distilrel.metrics.functions import (
    GainScheme,
    auroc_at_thresholds,
    dcg,
    grade_gains,
    level_accuracy,
    macro_f1,
    mrr,
    ndcg,
    pair_auc,
    precision,
    recall,
    rmse,
)
from distilrel.metrics.names import (
    ESCI_GRADES,
    ESCI_KDD_GAINS,
    ESCI_REPO_GAINS,
    SUPPORTED_FORMS,
    MetricSpec,
    metric_label,
    parse_metric,
)
from distilrel.metrics.run import Ties, mean_scores, score_run
from distilrel.metrics.segments import breakdown, query_length_bucket
from distilrel.metrics.significance import PairedTestResult, paired_test

__all__ = [
    "ESCI_GRADES",
    "ESCI_KDD_GAINS",
    "ESCI_REPO_GAINS",
    "SUPPORTED_FORMS",
    "GainScheme",
    "MetricSpec",
    "PairedTestResult",
    "Ties",
    "auroc_at_thresholds",
    "breakdown",
    "dcg",
    "grade_gains",
    "level_accuracy",
    "macro_f1",
    "mean_scores",
    "metric_label",
    "mrr",
    "ndcg",
    "pair_auc",
    "paired_test",
    "parse_metric",
    "precision",
    "query_length_bucket",
    "recall",
    "rmse",
    "score_run",
]
