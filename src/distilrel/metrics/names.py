"""Metric names: the ONE place where strings like ``ndcg@10`` are parsed.

Supported forms (case-insensitive; ``@k`` is optional everywhere and, when absent, means the whole
ranked list):

=====================  ======================================================================
``ndcg``, ``ndcg@k``   NDCG with the caller's gain map (``None`` = linear: gain = grade)
``ndcg_exp@k``         NDCG with gain 2**grade - 1
``ndcg_lin@k``         NDCG with gain = grade, whatever gain map the caller passes
``esci_ndcg``          official ESCI Task 1 (KDD Cup 2022) measure: NDCG over each query's whole
                       judged list, gains E=1, S=0.1, C=0.01, I=0 (grades E=3, S=2, C=1, I=0);
                       the run should rank exactly the judged documents of each query
``esci_repo_ndcg``     the ESCI repository's own scorer (``ranking/prepare_trec_eval_files.py`` +
                       trec_eval), which swaps S and C: E=1, C=0.1, S=0.01, I=0
``p@k``, ``precision@k``  precision at k (divides by k, like trec_eval ``P@k``)
``recall@k``           recall at k
``mrr``, ``mrr@k``     reciprocal rank of the first relevant document (within k)
=====================  ======================================================================

Relevance for precision/recall/MRR is ``grade >= rel_threshold``; NDCG ignores the threshold and
uses gains only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from distilrel.metrics.functions import GainScheme

MetricName = Literal["ndcg", "precision", "recall", "mrr"]
#: ``"given"`` = the gain map passed to the scorer; else a fixed scheme or explicit (grade, gain) pairs.
GainSpec = Literal["given", "linear", "exponential"] | tuple[tuple[int, float], ...]

#: ESCI labels as integer grades (most relevant = highest grade).
ESCI_GRADES: Mapping[str, int] = {"E": 3, "S": 2, "C": 1, "I": 0}
#: KDD Cup 2022 Task 1 leaderboard gains, by grade: E=1, S=0.1, C=0.01, I=0.
ESCI_KDD_GAINS: tuple[tuple[int, float], ...] = ((3, 1.0), (2, 0.1), (1, 0.01), (0, 0.0))
#: amazon-science/esci-data ``ranking/`` trec_eval scorer gains, by grade: E=1, S=0.01, C=0.1, I=0.
ESCI_REPO_GAINS: tuple[tuple[int, float], ...] = ((3, 1.0), (2, 0.01), (1, 0.1), (0, 0.0))

_NDCG_BASES: dict[str, GainSpec] = {
    "ndcg": "given",
    "ndcg_exp": "exponential",
    "ndcg_lin": "linear",
    "esci_ndcg": ESCI_KDD_GAINS,
    "esci_repo_ndcg": ESCI_REPO_GAINS,
}
_OTHER_BASES: dict[str, MetricName] = {
    "p": "precision",
    "precision": "precision",
    "recall": "recall",
    "mrr": "mrr",
}
_GAIN_LABELS: dict[GainSpec, str] = {gains: base for base, gains in _NDCG_BASES.items()}
_PATTERN = re.compile(r"(?P<base>[a-z_]+)(?:@(?P<k>\d+))?")

SUPPORTED_FORMS = (
    "ndcg, ndcg@k, ndcg_exp[@k], ndcg_lin[@k], esci_ndcg[@k], esci_repo_ndcg[@k], "
    "p@k / precision[@k], recall[@k], mrr[@k] (k a positive integer; no @k = the whole ranked list)"
)


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric: what to compute, the cutoff, and (NDCG only) how grades become gains."""

    name: MetricName
    k: int | None = None
    gains: GainSpec = "given"

    def __post_init__(self) -> None:
        if self.name not in ("ndcg", "precision", "recall", "mrr"):
            raise ValueError(f"unknown metric kind {self.name!r}; kinds are ndcg, precision, recall, mrr")
        if self.k is not None and (isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1):
            raise ValueError(f"metric cutoff k must be a positive integer or None, got {self.k!r}")
        if self.name != "ndcg" and self.gains != "given":
            raise ValueError(f"gains only apply to ndcg, not {self.name}")
        if isinstance(self.gains, tuple):
            grades = [g for g, _ in self.gains]
            if len(set(grades)) != len(grades):
                raise ValueError(f"gain pairs repeat a grade: {self.gains}")
        elif self.gains not in ("given", "linear", "exponential"):
            raise ValueError(f"unknown gain scheme {self.gains!r}; use given, linear, exponential or pairs")

    def gain_scheme(self, given: Mapping[int, float] | None) -> GainScheme:
        """The gain scheme to hand to :func:`~distilrel.metrics.functions.grade_gains`."""
        if self.gains == "given":
            return "linear" if given is None else given
        if isinstance(self.gains, tuple):
            return dict(self.gains)
        return self.gains


def parse_metric(name: str) -> MetricSpec:
    """Parse a metric name such as ``ndcg@10``; raises ValueError listing the supported forms."""
    if not isinstance(name, str):
        raise ValueError(f"metric name must be a string, got {name!r}; supported: {SUPPORTED_FORMS}")
    m = _PATTERN.fullmatch(name.strip().lower())
    base = m.group("base") if m else None
    if m is None or (base not in _NDCG_BASES and base not in _OTHER_BASES):
        raise ValueError(f"unknown metric {name!r}; supported: {SUPPORTED_FORMS}")
    k = None if m.group("k") is None else int(m.group("k"))
    if k == 0:
        raise ValueError(f"metric {name!r}: k must be >= 1 (leave out @k for the whole list)")
    if base in _NDCG_BASES:
        return MetricSpec("ndcg", k, _NDCG_BASES[base])
    return MetricSpec(_OTHER_BASES[base], k)


def metric_label(spec: MetricSpec) -> str:
    """Canonical name of a spec (``parse_metric(metric_label(s)) == s`` for every parseable spec).

    Explicit gain pairs that match no preset are written out, e.g. ``ndcg[3=1,1=0.5]@10``; such a
    label is descriptive only and does not parse.
    """
    if spec.name == "ndcg":
        base = _GAIN_LABELS.get(spec.gains)
        if base is None:
            pairs = ",".join(f"{g}={v:g}" for g, v in spec.gains)  # type: ignore[union-attr]
            base = f"ndcg[{pairs}]"
    else:
        base = spec.name
    return base if spec.k is None else f"{base}@{spec.k}"
