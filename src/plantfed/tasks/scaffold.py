"""`plantfed task init NAME`: a task package to start from, whose tests pass before anything is changed.

The package is what a plant's image needs: an installable project (`pyproject.toml`) holding the task module, its
tests (which run `plantfed task check`'s checks on the task's synthetic data) and a Dockerfile that adds it to the
plantfed image (see docs/tasks.md, "Getting a task into the images"). The task itself is a small, complete
classifier of tabular samples so every piece is there to be replaced: `load_data` reads one plant's `data.npz`
(arrays `x`, `y`) or makes synthetic data, splits it deterministically and normalises with train statistics only.
"""

from __future__ import annotations

import importlib.metadata
import keyword
import re
from pathlib import Path
from string import Template

NAME = re.compile(r"^[a-z][a-z0-9_]*$")

TASK = '''"""$title: a plantfed task. Replace the model, `load_data` and `batch_loss` with your own."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from plantfed.tasks import BatchResult, DataSpec, PlantData, Task, require_own_data

FEATURES = 8
CLASSES = 3
FRACTIONS = (0.7, 0.15, 0.15)


def synthetic(seed: int, plant_index: int, samples: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes whose centres shift from plant to plant: the same problem, a different operating point."""
    rng = np.random.default_rng([seed, plant_index])
    y = rng.integers(0, CLASSES, samples)
    centres = np.random.default_rng(seed).normal(size=(CLASSES, FEATURES)) * 2.0 + 0.3 * plant_index
    x = centres[y] + rng.normal(size=(samples, FEATURES))
    return x.astype(np.float32), y.astype(np.int64)


def read_plant(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One plant's `data.npz`: `x` (samples x $features float), `y` (class index per sample)."""
    with np.load(path / "data.npz", allow_pickle=False) as data:
        x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    if x.ndim != 2 or x.shape[1] != FEATURES or y.shape != (len(x),):
        raise ValueError(f"{path / 'data.npz'}: need x of shape (n, {FEATURES}) and y of shape (n,)")
    return x, y


class $cls(Task):
    name: ClassVar[str] = "$name"
    variants: ClassVar[tuple[str, ...]] = ("full",)

    def build_model(self, variant: str = "full") -> nn.Module:
        if variant != "full":
            raise ValueError(f"unknown variant {variant!r}")
        return nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, CLASSES))

    def plant_name(self, spec: DataSpec) -> str:
        return Path(spec.path).name if spec.path is not None else spec.plant

    def load_data(self, spec: DataSpec) -> PlantData:
        if spec.path is None:
            x, y = synthetic(spec.seed, spec.plant_index)
        else:
            require_own_data(spec, str(spec.path))  # a plant's volume is that plant's data only
            x, y = read_plant(Path(spec.path))
        order = np.random.default_rng(spec.seed).permutation(len(x))  # seeded: every load splits the same way
        cut1, cut2 = int(FRACTIONS[0] * len(x)), int((FRACTIONS[0] + FRACTIONS[1]) * len(x))
        parts = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}
        mean, std = x[parts["train"]].mean(axis=0), x[parts["train"]].std(axis=0) + 1e-6  # train statistics only

        def split(index: np.ndarray) -> TensorDataset:
            return TensorDataset(torch.from_numpy((x[index] - mean) / std), torch.from_numpy(y[index]))

        return PlantData(
            train=split(parts["train"]),
            val=split(parts["val"]),
            test=split(parts["test"]),
            info={"plant": self.plant_name(spec), "samples": len(x)},
        )

    def batch_loss(self, model: nn.Module, batch: Any, device: torch.device) -> BatchResult:
        x, y = (t.to(device) for t in batch)
        logits = model(x)
        hits = float((logits.argmax(dim=1) == y).sum())
        # Sums over the batch for each declared score (`scores`, default: accuracy); docs/scores.md.
        return BatchResult(loss=F.cross_entropy(logits, y), count=int(y.numel()), stats={"accuracy": hits})
'''

INIT = '''"""$title: a plantfed task package.

The task's reference (`--task`, a FederatedModel's spec.task):
$name.task:$cls
"""

from $name.task import $cls

__all__ = ["$cls"]
'''

TESTS = '''"""The task passes `plantfed task check`'s checks and keeps the data contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plantfed.tasks import DataSpec
from plantfed.tasks.check import check_task, render
from $name.task import $cls, synthetic


def write_plant(directory: Path, plant_index: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    x, y = synthetic(seed=7, plant_index=plant_index)
    np.savez(directory / "data.npz", x=x, y=y)
    return directory


def test_every_check_passes_on_synthetic_data() -> None:
    text, ok = render(check_task($cls(), DataSpec("plant-1")))
    assert ok, text


def test_every_check_passes_on_a_plant_directory(tmp_path: Path) -> None:
    spec = DataSpec("plant-1", path=write_plant(tmp_path / "site-a"))
    text, ok = render(check_task($cls(), spec))
    assert ok, text


def test_each_synthetic_plant_has_its_own_data() -> None:
    task = $cls()
    a, b = (task.load_data(DataSpec(f"plant-{i}", plant_index=i, num_plants=2)) for i in (0, 1))
    assert not np.allclose(a.train[0][0].numpy(), b.train[0][0].numpy())


def test_one_plants_directory_is_refused_for_several_plants(tmp_path: Path) -> None:
    spec = DataSpec("plant-2", path=write_plant(tmp_path / "site-a"), plant_index=1, num_plants=2)
    with pytest.raises(ValueError, match="is one plant's data"):
        $cls().load_data(spec)
'''

PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$title: a plantfed task"
requires-python = ">=3.11"
# plantfed (and its torch) come from the plantfed image; list only what the task adds.
dependencies = []

[tool.setuptools]
packages = ["$name"]

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
"""

DOCKERFILE = """# The plantfed image with this task installed. Plants train in it (plant chart: image.repository/tag)
# and the hub's operator starts its init and aggregation Jobs in it (hub chart: image.repository/tag).
#   docker build -t registry.example.com/plantfed-$dist:0.1.0 .
ARG PLANTFED_IMAGE=ghcr.io/plantfed/plantfed:$version
FROM $${PLANTFED_IMAGE}
USER root
COPY . /tmp/$name
# --no-deps: keep the image's pinned torch and plantfed; add the task's own dependencies explicitly.
RUN /opt/plantfed/bin/pip install --no-cache-dir --no-deps /tmp/$name && rm -rf /tmp/$name \\
 && /opt/plantfed/bin/python -c "from plantfed.tasks import load_task; load_task('$name.task:$cls')"
USER 10001:10001
"""

README = """# $title

A plantfed task: `--task $name.task:$cls` (a FederatedModel's `spec.task`).

```sh
export PYTHONPATH=$$PWD                                    # or: pip install -e . (into plantfed's environment)
python -m pytest                                          # the task's tests, including plantfed task check
plantfed task check $name.task:$cls --data DIR            # on one plant's data (DIR/data.npz)
plantfed simulate --task $name.task:$cls --plants 3       # a rehearsal on synthetic plants
docker build -t registry.example.com/plantfed-$dist:0.1.0 .   # the plantfed image with this task
```

Each plant's data volume holds `data.npz` with `x` (samples x features, float) and `y` (class index). Set the
image built above as `image.repository`/`image.tag` in both the plant chart (training pods) and the hub chart
(init and aggregation Jobs). See plantfed's docs/tasks.md.
"""


def class_name(name: str) -> str:
    """`rul_press` -> `RulPressTask`."""
    return "".join(part.title() for part in name.split("_") if part) + "Task"


def scaffold(name: str, parent: Path) -> list[Path]:
    """Write the package `parent/NAME`; returns the files written. Refuses a bad name or an existing directory."""
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ValueError(
            f"task name {name!r}: use a Python module name (lower case letters, digits, underscores; "
            "starting with a letter)"
        )
    if name in ("plantfed", "torch", "tests", "test"):
        raise ValueError(f"task name {name!r} would shadow an existing package; pick another")
    root = parent / name
    if root.exists():
        raise ValueError(f"{root} already exists; pick another name or directory")
    try:
        version = importlib.metadata.version("plantfed")
    except importlib.metadata.PackageNotFoundError:
        version = "latest"
    values = {
        "name": name,
        "cls": class_name(name),
        "dist": name.replace("_", "-"),
        "title": name.replace("_", " ").capitalize(),
        "features": "8",
        "version": version,
    }
    files = {
        root / name / "__init__.py": INIT,
        root / name / "task.py": TASK,
        root / "tests" / f"test_{name}.py": TESTS,
        root / "pyproject.toml": PYPROJECT,
        root / "Dockerfile": DOCKERFILE,
        root / "README.md": README,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values))
    return list(files)
