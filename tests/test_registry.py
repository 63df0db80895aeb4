from __future__ import annotations

from pathlib import Path

import pytest

from re_pipeline.registry import Registry


def test_a_model_becomes_current_only_if_it_beats_the_current_one(tmp_path: Path) -> None:
    for name in ("docred-a", "docred-b", "docred-c"):
        (tmp_path / name).mkdir()
    reg = Registry(tmp_path)
    assert reg.current("docred") is None and reg.versions() == {}
    assert reg.register("docred", "docred-a", {"f1": 40.0}) is True
    assert reg.register("docred", "docred-b", {"f1": 35.0}) is False  # worse: recorded, not promoted
    assert reg.current("docred") == tmp_path / "docred-a"
    assert reg.register("docred", "docred-c", {"f1": 41.0}) is True
    assert reg.versions() == {"docred": "docred-c"}
    assert reg.versions(pinned=("docred-b",)) == {"docred": "docred-b"}
    assert set(reg.read()["models"]) == {"docred-a", "docred-b", "docred-c"}


def test_registry_rejects_what_it_cannot_compare(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    reg = Registry(tmp_path)
    with pytest.raises(ValueError, match="need 'f1'"):
        reg.register("docred", "m", {"accuracy": 1.0})
    with pytest.raises(ValueError, match="unknown role"):
        reg.register("ner", "m", {"f1": 1.0})
    with pytest.raises(FileNotFoundError):
        reg.register("docred", "missing", {"f1": 1.0})
    with pytest.raises(KeyError, match="not in"):
        reg.versions(pinned=("nope",))


def test_scores_over_other_data_do_not_block_a_new_model(tmp_path: Path) -> None:
    for name in ("quick", "full", "full-worse"):
        (tmp_path / name).mkdir()
    reg = Registry(tmp_path)
    assert reg.register("coref", "quick", {"conll_f1": 93.6}, evaluated_on="sample [24:30]") is True
    # a lower score on a harder dev set is not worse: it cannot be compared, the newer model wins
    assert reg.register("coref", "full", {"conll_f1": 70.0}, evaluated_on="dev_revised.json [400:500]") is True
    assert reg.register("coref", "full-worse", {"conll_f1": 65.0}, evaluated_on="dev_revised.json [400:500]") is False
    assert reg.versions() == {"coref": "full"}


def test_parallel_registrations_lose_nothing(tmp_path: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    names = [f"docred-{i}" for i in range(8)]
    for name in names:
        (tmp_path / name).mkdir()
    with ProcessPoolExecutor(4) as pool:
        list(pool.map(_register, [tmp_path] * len(names), names))
    assert set(Registry(tmp_path).read()["models"]) == set(names)
    assert not list(tmp_path.glob("*.tmp"))


def _register(root: Path, name: str) -> bool:
    return Registry(root).register("docred", name, {"f1": float(name.rsplit("-", 1)[1])})
