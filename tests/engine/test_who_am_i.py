"""WhoAmI and `plantfed reach-hub`'s exchange check against a real exchange: the token names one identity."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from support.exchange import ADMIN_TOKEN, Hub

from plantfed.exchange import ExchangeError
from plantfed.exchange.auth import Caller
from plantfed.plant.agent.reach import check_exchange


def test_the_exchange_names_the_holder_of_each_token(hub: Hub) -> None:
    assert hub.plant("plant-a").who_am_i() == Caller(plant="plant-a")
    assert hub.plant("plant-b").who_am_i() == Caller(plant="plant-b")
    assert hub.admin().who_am_i() == Caller(admin=True)
    with pytest.raises(ExchangeError, match="UNAUTHENTICATED"):
        hub.client_with_token("not-a-token").who_am_i()


def _args(hub: Hub, tmp_path: Path, plant: str, token: str) -> argparse.Namespace:
    token_file = tmp_path / f"token-{plant}"
    token_file.write_text(token + "\n")
    return argparse.Namespace(
        plant=plant,
        exchange=hub.target,
        token_file=token_file,
        ca_file=None,
        client_cert=None,
        client_key=None,
        timeout=10.0,
    )


def test_reach_hub_accepts_the_plants_own_token(hub: Hub, tmp_path: Path) -> None:
    ok, message = check_exchange(_args(hub, tmp_path, "plant-a", hub.tokens["plant-a"]))
    assert ok, message


@pytest.mark.parametrize(
    ("token_of", "words"), [("plant-b", "for plant 'plant-b', not for plant 'plant-a'"), ("admin", "for the admin")]
)
def test_reach_hub_names_whose_token_it_was_given(hub: Hub, tmp_path: Path, token_of: str, words: str) -> None:
    token = ADMIN_TOKEN if token_of == "admin" else hub.tokens[token_of]
    ok, message = check_exchange(_args(hub, tmp_path, "plant-a", token))
    assert not ok and words in message, message


def test_reach_hub_reports_a_refused_token(hub: Hub, tmp_path: Path) -> None:
    ok, message = check_exchange(_args(hub, tmp_path, "plant-a", "forged"))
    assert not ok and "refused this plant's credentials" in message and "UNAUTHENTICATED" in message, message
