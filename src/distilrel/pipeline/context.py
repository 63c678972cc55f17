"""What every stage of a run shares: the config, the run folder, the console and the loaded datasets.

Datasets are loaded once per process and keyed by their ``[data]`` name. When any text recipe of the run
names ``engaged_queries``, that document column is added (from train-split judgments only, see
:mod:`distilrel.text.engaged`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console

from distilrel.config import ConfigError, DatasetSpec, load_dataset_spec
from distilrel.data.schema import Dataset
from distilrel.evaluate.scorer import Scorer
from distilrel.pipeline.config import PipelineConfig

ENGAGED = "engaged_queries"


@dataclass
class RunContext:
    config: PipelineConfig
    console: Console = field(default_factory=lambda: Console(stderr=True))
    progress: bool = True  # progress bars of the long stages
    _datasets: dict[str, Dataset] = field(default_factory=dict)
    _scorers: dict[str, Scorer] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.config.root

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def log(self, message: str) -> None:
        """Plain text: brackets in messages ("[teacher]", "[UNK]") are not rich markup."""
        self.console.print(message, markup=False, highlight=False)

    def specs(self) -> list[DatasetSpec]:
        """The run's datasets, then the transfer-only ones."""
        extra = self.config.transfer.datasets if self.config.transfer else ()
        return [*self.config.data.datasets, *[s for s in extra if s.name not in self.config.data.names]]

    def dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            spec = next((s for s in self.specs() if s.name == name), None)
            if spec is None:
                raise ConfigError(f"{self.config.source}: dataset {name!r} is not configured")
            ds = load_dataset_spec(spec, self.config.data.data_dir)
            if ds.name != spec.name:
                raise ConfigError(
                    f"{self.config.source}: dataset entry {spec.name!r} loads a dataset named {ds.name!r}; "
                    f"give it options.name = {spec.name!r} (stages match datasets by name)"
                )
            if self.config.uses_field(ENGAGED):
                from distilrel.text.engaged import add_engaged_queries

                ds = add_engaged_queries(ds)
            self._datasets[name] = ds
        return self._datasets[name]

    def datasets(self, names: Sequence[str]) -> list[Dataset]:
        return [self.dataset(n) for n in names]

    def scorer(self, name: str) -> Scorer:
        """A baseline or zero-shot scorer by name, one instance per run process: a bi-encoder's document
        embedding cache then serves every stage that scores the same texts (the baselines and the ablation
        steps whose text did not change), instead of encoding the catalog again."""
        if name not in self._scorers:
            from distilrel.evaluate.scorers import load_scorer

            self._scorers[name] = load_scorer(name, progress=self.progress)
        return self._scorers[name]


def dataset_hash(ds: Dataset) -> str:
    """Content hash of a loaded dataset's canonical tables, levels and fields: any change to the data files
    (or to how they load) that changes what the stages read changes it."""
    h = hashlib.sha256()
    h.update(repr((ds.name, ds.levels, ds.fields, ds.task)).encode())
    for df in (ds.documents, ds.judgments):
        h.update(",".join(map(str, df.columns)).encode())
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def folder_stamp(folder: str | Path) -> str:
    """Cheap fingerprint of a model folder: relative names, sizes and mtimes of its files."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def with_fields(ds: Dataset, names: Sequence[str]) -> tuple[Dataset, list[str]]:
    """``ds`` with an empty column for each of ``names`` its documents lack (read as empty text), and
    those names: a model trained with a field can still score a dataset that has none."""
    import dataclasses

    missing = [n for n in names if n not in ds.documents.columns]
    if not missing:
        return ds, []
    return dataclasses.replace(ds, documents=ds.documents.assign(**dict.fromkeys(missing, ""))), missing
