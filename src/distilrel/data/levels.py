"""Ordered relevance levels: names, numeric grades, gains and the relevance threshold.

A level mapping is data, not code. Level index 0 is the MOST relevant level, index K-1 the least.
Judgment tables store the level index (``level`` column, int); metrics receive gains or grades
looked up from this mapping, so they never need to know a dataset's label vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LevelMapping:
    """K ordered relevance levels, most relevant first.

    names:    level names, most relevant first (e.g. ``("E", "S", "C", "I")``).
    grades:   integer relevance grade per level, used in TREC qrels files and for
              linear/exponential gains (default K-1 .. 0).
    gains:    gain per level used by NDCG (default: ``grades`` — linear gain, as trec_eval/ranx).
    relevant: number of top levels that count as relevant for precision@k / recall@k / MRR.
    labels:   maps a raw dataset label (str) onto a level name; unknown labels are an error.
    """

    names: tuple[str, ...]
    grades: tuple[int, ...] = ()
    gains: tuple[float, ...] = ()
    relevant: int = 1
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        k = len(self.names)
        if k < 2:
            raise ValueError(f"LevelMapping needs at least 2 levels, got {list(self.names)}")
        if len(set(self.names)) != k:
            raise ValueError(f"LevelMapping level names must be unique: {list(self.names)}")
        if not self.grades:
            object.__setattr__(self, "grades", tuple(range(k - 1, -1, -1)))
        if not self.gains:
            object.__setattr__(self, "gains", tuple(float(g) for g in self.grades))
        if len(self.grades) != k or len(self.gains) != k:
            raise ValueError(
                f"LevelMapping: {k} names but {len(self.grades)} grades and {len(self.gains)} gains"
            )
        if list(self.grades) != sorted(self.grades, reverse=True):
            raise ValueError(
                f"LevelMapping grades must be non-increasing (most relevant first): {self.grades}"
            )
        if not 1 <= self.relevant <= k:
            raise ValueError(f"LevelMapping.relevant must be in 1..{k}, got {self.relevant}")
        for raw, name in self.labels.items():
            if name not in self.names:
                raise ValueError(f"LevelMapping label {raw!r} maps to unknown level {name!r}")

    @property
    def k(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"unknown level {name!r}; levels are {list(self.names)}") from None

    def level_of(self, raw: object) -> int:
        """Level index of a raw dataset label (via ``labels``, else by level name). Raises on unknown."""
        key = str(raw)
        if key in self.labels:
            return self.index(self.labels[key])
        if key in self.names:
            return self.index(key)
        raise ValueError(f"unknown label {raw!r}; known labels: {sorted(set(self.labels) | set(self.names))}")

    def with_gains(self, scheme: str | tuple[float, ...]) -> LevelMapping:
        """Same levels with another gain convention: ``linear`` (= grade), ``exponential`` (2^grade - 1)
        or explicit gains per level."""
        if isinstance(scheme, tuple):
            gains = tuple(float(g) for g in scheme)
        elif scheme == "linear":
            gains = tuple(float(g) for g in self.grades)
        elif scheme in ("exp", "exponential"):
            gains = tuple(math.pow(2.0, g) - 1.0 for g in self.grades)
        else:
            raise ValueError(
                f"unknown gain scheme {scheme!r}; use 'linear', 'exponential' or a tuple of gains"
            )
        return LevelMapping(self.names, self.grades, gains, self.relevant, dict(self.labels))

    def to_dict(self) -> dict[str, object]:
        return {
            "names": list(self.names),
            "grades": list(self.grades),
            "gains": list(self.gains),
            "relevant": self.relevant,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> LevelMapping:
        return cls(
            names=tuple(d["names"]),  # type: ignore[arg-type]
            grades=tuple(d.get("grades", ())),  # type: ignore[arg-type]
            gains=tuple(d.get("gains", ())),  # type: ignore[arg-type]
            relevant=int(d.get("relevant", 1)),  # type: ignore[arg-type]
            labels={str(k): str(v) for k, v in dict(d.get("labels", {})).items()},  # type: ignore[arg-type]
        )


def remap_levels(source: LevelMapping, target: LevelMapping) -> list[int]:
    """Target level index for each of ``source``'s levels, by nearest relative grade (ties: more relevant).

    CrowdFlower (grades 3..0) onto the 5-level guideline (4..0): 4->excellent, 3->good, 2->bad, 1->irrelevant.
    """

    def rel(grades: Sequence[int]) -> list[float]:
        lo, hi = min(grades), max(grades)
        if hi == lo:
            raise ValueError(f"level mapping {list(grades)} has a single grade; cannot place it on a scale")
        return [(g - lo) / (hi - lo) for g in grades]

    src, tgt = rel(source.grades), rel(target.grades)
    # Target levels are ordered most relevant first, so min() over the index breaks ties upward.
    return [min(range(len(tgt)), key=lambda j, r=r: (round(abs(tgt[j] - r), 9), j)) for r in src]


# --- presets -------------------------------------------------------------------------------------

#: The seed system's guideline: 5 levels, most relevant first.
DEFAULT_5 = LevelMapping(
    names=("excellent", "good", "fair", "bad", "irrelevant"),
    relevant=2,
    labels={"4": "excellent", "3": "good", "2": "fair", "1": "bad", "0": "irrelevant"},
)

#: CrowdFlower: median of raters, integer 1..4 (4 = most relevant). Relevant = 3 or 4.
CROWDFLOWER = LevelMapping(
    names=("4", "3", "2", "1"),
    grades=(3, 2, 1, 0),
    relevant=2,
)

#: Home Depot: rater means on 1..3, binned into 5 levels (edges documented in the loader).
HOMEDEPOT = LevelMapping(
    names=("3.0", "2.5+", "2.0+", "1.5+", "<1.5"),
    grades=(4, 3, 2, 1, 0),
    relevant=2,
)

#: ESCI as the dataset repository's own scorer computes it (E=1, C=0.1, S=0.01, I=0).
ESCI_REPO = LevelMapping(
    names=("E", "S", "C", "I"),
    grades=(3, 2, 1, 0),
    gains=(1.0, 0.01, 0.1, 0.0),
    relevant=1,
    labels={"exact": "E", "substitute": "S", "complement": "C", "irrelevant": "I"},
)

#: ESCI as the KDD Cup 2022 Task 1 leaderboard computed it (E=1, S=0.1, C=0.01, I=0).
ESCI_KDD = LevelMapping(
    names=("E", "S", "C", "I"),
    grades=(3, 2, 1, 0),
    gains=(1.0, 0.1, 0.01, 0.0),
    relevant=1,
    labels={"exact": "E", "substitute": "S", "complement": "C", "irrelevant": "I"},
)

#: SciFact (our graded reading): SUPPORT/CONTRADICT = 2, CITED_NO_EVIDENCE = 1; unjudged = 0.
SCIFACT = LevelMapping(
    names=("evidence", "cited", "unjudged"),
    grades=(2, 1, 0),
    relevant=2,
    labels={"SUPPORT": "evidence", "CONTRADICT": "evidence", "CITED_NO_EVIDENCE": "cited"},
)

#: Binary relevance (QA retrieval sets, binarised ESCI-es): 1 = relevant.
BINARY = LevelMapping(
    names=("relevant", "not_relevant"), relevant=1, labels={"1": "relevant", "0": "not_relevant"}
)

PRESETS: dict[str, LevelMapping] = {
    "default5": DEFAULT_5,
    "crowdflower": CROWDFLOWER,
    "homedepot": HOMEDEPOT,
    "esci": ESCI_KDD,
    "esci-kdd": ESCI_KDD,
    "esci-repo": ESCI_REPO,
    "scifact": SCIFACT,
    "binary": BINARY,
}


def preset(name: str) -> LevelMapping:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown level preset {name!r}; presets: {sorted(PRESETS)}") from None
