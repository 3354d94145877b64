"""Shared fixtures for the bearing task's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from plantfed.tasks.bearing import BearingTask
from plantfed.tasks.sdk import DataSpec, PlantData

CWRU_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cwru"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: the test machine is shared, and oversubscribed threads slow everyone down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def task() -> BearingTask:
    return BearingTask()


@pytest.fixture(scope="session")
def small() -> dict[str, float]:
    """Options for small synthetic plants: every class in every split, quick to build."""
    return {"recordings_per_class": 2, "seconds": 3.0}


@pytest.fixture(scope="session")
def cwru_dir() -> Path:
    if not (CWRU_DIR / "load0hp_1797rpm_DE.npz").exists():
        pytest.skip(f"CWRU data not present at {CWRU_DIR}")
    return CWRU_DIR


@pytest.fixture(scope="session")
def cwru_plants(task: BearingTask, cwru_dir: Path) -> list[PlantData]:
    return [task.load_data(DataSpec(f"p{i}", cwru_dir, i, 4)) for i in range(4)]
