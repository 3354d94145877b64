"""`plantfed task init` writes a package whose own tests pass; `plantfed task check` names each broken promise.

Each broken task below breaks exactly one thing; the test checks that exactly that check fails, with a message
naming the problem, and the others pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from support.paths import REPO
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from plantfed.cli import main
from plantfed.tasks import BatchResult, DataSpec, PlantData, Task
from plantfed.tasks.check import Finding, check_task


def tensors(seed: int, n: int = 48) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g))


class Tiny(Task):
    """Every check passes."""

    variants: ClassVar[tuple[str, ...]] = ("full", "light")

    def build_model(self, variant: str = "full") -> nn.Module:
        layers: list[nn.Module] = [nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)]
        return nn.Sequential(*layers) if variant == "full" else nn.Sequential(layers[0])

    def load_data(self, spec: DataSpec) -> PlantData:
        return PlantData(train=tensors(1), val=tensors(2, 16), test=tensors(3, 16))

    def batch_loss(self, model: nn.Module, batch: Any, device: torch.device) -> BatchResult:
        x, y = batch
        out = model(x)
        logits = out if out.shape[1] == 2 else out[:, :2]
        hits = float((logits.argmax(1) == y).sum())
        return BatchResult(F.cross_entropy(logits, y), int(y.numel()), {"accuracy": hits})


class Reshuffled(Tiny):
    def load_data(self, spec: DataSpec) -> PlantData:
        return PlantData(train=tensors(int(torch.randint(0, 10**6, ()))), val=tensors(2, 16), test=tensors(3, 16))


class Leaky(Tiny):
    def load_data(self, spec: DataSpec) -> PlantData:
        return PlantData(train=tensors(1), val=tensors(2, 16), test=tensors(1))


class NaNScores(Tiny):
    def evaluate(self, model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        return {"loss": 0.5, "rmse": float("nan")}


class Spectral(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.fft.rfft(x).abs())


class FFT(Tiny):
    variants: ClassVar[tuple[str, ...]] = ("full",)

    def build_model(self, variant: str = "full") -> nn.Module:
        return Spectral()


class WithBatchNorm(Tiny):
    variants: ClassVar[tuple[str, ...]] = ("full",)

    def build_model(self, variant: str = "full") -> nn.Module:
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))


class Renamed(Tiny):
    def build_model(self, variant: str = "full") -> nn.Module:
        full = super().build_model("full")
        return full if variant == "full" else nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def failed(findings: list[Finding]) -> dict[str, str]:
    return {f.check: f.detail for f in findings if not f.ok}


def test_a_sound_task_passes_every_check() -> None:
    findings = check_task(Tiny(), DataSpec("p"))
    assert failed(findings) == {}
    assert [f.check for f in findings] == [
        "loads data",
        "deterministic loading",
        "splits disjoint",
        "builds models",
        "metrics finite",
        "training step",
        "ONNX export",
        "DP-SGD compatible",
        "variants share parameters",
    ]


@pytest.mark.parametrize(
    ("task", "check", "words"),
    [
        (Reshuffled(), "deterministic loading", "train[0] differs between two loads of the same spec"),
        (Leaky(), "splits disjoint", "48 test samples also in train (first: test[0] = train[0])"),
        (NaNScores(), "metrics finite", "evaluate on the val split: rmse=nan"),
        (FFT(), "ONNX export", "full: UnsupportedOperatorError: Exporting the operator 'aten::fft_rfft'"),
        (WithBatchNorm(), "DP-SGD compatible", "BatchNorm"),
        (Renamed(), "variants share parameters", "light: 2.weight has shape (3, 8), (2, 8) in full"),
    ],
)
def test_each_broken_promise_fails_its_own_check_and_says_what(task: Task, check: str, words: str) -> None:
    problems = failed(check_task(task, DataSpec("p")))
    assert list(problems) == [check] and words in problems[check], problems


def test_the_built_in_bearing_task_passes_every_check(task: Task, small: dict[str, float]) -> None:
    assert failed(check_task(task, DataSpec("p", options=small))) == {}


def test_check_exits_non_zero_and_prints_each_failure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["task", "check", f"{__name__}:Leaky"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  splits disjoint: 48 test samples also in train" in out and "1 of 9 checks failed" in out
    assert main(["task", "check", "no_such_package.tasks:Task"]) == 1
    assert "No module named 'no_such_package' (is its package installed" in capsys.readouterr().out


@pytest.mark.slow
def test_init_writes_a_package_whose_own_tests_and_check_pass(tmp_path: Path) -> None:
    assert main(["task", "init", "rul_press", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "rul_press"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO / "src")])}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0 and "4 passed" in tests.stdout, tests.stdout + tests.stderr
    check = subprocess.run(
        [sys.executable, "-m", "plantfed", "task", "check", "rul_press.task:RulPressTask"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and "all 9 checks passed" in check.stdout, check.stdout + check.stderr
    assert "FROM ${PLANTFED_IMAGE}" in (root / "Dockerfile").read_text()


@pytest.mark.parametrize(
    ("name", "words"), [("Rul-Press", "use a Python module name"), ("class", "use a Python module name")]
)
def test_init_refuses_a_bad_name_or_an_existing_directory(tmp_path: Path, name: str, words: str) -> None:
    with pytest.raises(SystemExit, match=words):
        main(["task", "init", name, "--dir", str(tmp_path)])
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit, match="taken already exists"):
        main(["task", "init", "taken", "--dir", str(tmp_path)])
