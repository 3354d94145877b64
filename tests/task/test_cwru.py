"""The CWRU directory as four plants, one per motor load."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantfed.tasks.sdk import DataSpec


def test_four_plants_with_the_three_fault_classes(cwru_plants) -> None:
    assert [d.info["plant"] for d in cwru_plants] == ["load0hp", "load1hp", "load2hp", "load3hp"]
    for data in cwru_plants:
        assert data.info["source"] == "cwru" and data.info["fs"] == 12_000.0
        assert data.info["recordings"] == 15
        for split in ("train", "val", "test"):
            assert set(data.info["class_counts"][split]) == {"ball", "inner", "outer"}
            assert set(getattr(data, split).labels.tolist()) == {1, 2, 3}


def test_healthy_option_adds_normal_at_0hp_only_resampled_to_12khz(task, cwru_dir: Path) -> None:
    plants = [task.load_data(DataSpec(f"p{i}", cwru_dir, i, 4, options={"healthy": "true"})) for i in range(4)]
    assert set(plants[0].info["class_counts"]["test"]) == {"normal", "ball", "inner", "outer"}
    assert all("normal" not in p.info["class_counts"]["train"] for p in plants[1:])
    normal_spans = [s for s in plants[0].test.spans if s.recording == "Normal"]
    assert normal_spans and max(s.stop for s in normal_spans) <= 243_938 // 4


def test_more_plants_than_load_files_is_an_error(task, cwru_dir: Path) -> None:
    with pytest.raises(ValueError, match="holds 4 CWRU DE load files, fewer than num_plants=5"):
        task.load_data(DataSpec("p", cwru_dir, 0, 5))
