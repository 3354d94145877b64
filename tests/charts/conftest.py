"""The `helm` fixture: skips the test, saying how to get helm, when no binary is found (fails under CI)."""

from __future__ import annotations

import os

import pytest
from helmchart import Helm, find_helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = find_helm()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("helm not found, and CI must run the chart tests: `make testbin` builds it")
        pytest.skip(
            "helm not found: run `make testbin` (builds it into ~/.cache/plantfed/testbin) or set PLANTFED_HELM"
        )
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))
