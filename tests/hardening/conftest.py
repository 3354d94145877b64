"""A real exchange with the production payload check (updates validated against the round's base model).

The helpers behind it (and what the tests import) are in support.exchange and support.updates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.exchange import Hub, new_plant_tokens, running_hub
from support.updates import MODEL, base_state

from plantfed.formats import codecs


@pytest.fixture
def plant_tokens() -> dict[str, str]:
    return new_plant_tokens()


@pytest.fixture
def strict_hub(tmp_path: Path, plant_tokens: dict[str, str]) -> Iterator[Hub]:
    """An exchange with the default (deep) payload check, `MODEL` v1 promoted and round r1 open for a and b."""
    with running_hub(tmp_path, plant_tokens) as hub:
        base = tmp_path / "base.safetensors"
        codecs.save_state(base_state(), base)
        hub.admin().publish_model(MODEL, base, promote=True)
        hub.open_round("r1", ("plant-a", "plant-b"), model=MODEL)
        yield hub
