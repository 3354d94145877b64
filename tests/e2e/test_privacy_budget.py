"""The ε budget on Kubernetes: aggregation charges the plants, the operator keeps them within the budget."""

from __future__ import annotations

import re
import urllib.request

import pytest
from support.federation.rounds import PLANTS, condition, create_lineage, round_manifest, wait_phase

from plantfed.engine.privacy import DPMode, DPRelease, epsilon_for

DELTA = 1e-5
SIGMA = 1.0


def test_a_budget_for_one_local_dp_round_lets_the_plants_train_once(federation):
    hub = federation.hub
    create_lineage(hub, "private")
    release = DPRelease(mode=DPMode.LOCAL, noise_multiplier=SIGMA, clip_norm=1.0)
    one, two = (epsilon_for([release] * rounds, DELTA) for rounds in (1, 2))
    budget = round((one + two) / 2, 3)  # room for exactly one round
    privacy = {"mode": "local", "clipNorm": 1.0, "noiseMultiplier": SIGMA, "delta": DELTA, "epsilonBudget": budget}

    hub.apply(round_manifest(hub, "private-1", "private", privacy=privacy))
    fr = wait_phase(hub, "federatedrounds", "private-1", ("Succeeded",))
    assert {p["plant"]: p["state"] for p in fr["status"]["plants"]} == dict.fromkeys(PLANTS, "Uploaded")
    for plant, agent in federation.agents.items():  # recorded before the round is marked Succeeded
        assert agent.status()["dpEpsilon"] == pytest.approx(one), plant
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=10).read().decode()
    for plant in PLANTS:
        sample = re.search(rf'^plantfed_dp_epsilon_spent{{model="private",plant="{plant}"}} (\S+)$', metrics, re.M)
        assert sample and float(sample.group(1)) == pytest.approx(one), plant

    hub.apply(round_manifest(hub, "private-2", "private", privacy=privacy, minParticipants=1))
    fr = wait_phase(hub, "federatedrounds", "private-2", ("Failed",), timeout=120)
    plants = {p["plant"]: p for p in fr["status"]["plants"]}
    for plant in PLANTS:
        assert (plants[plant]["state"], plants[plant]["reason"]) == ("Excluded", "PrivacyBudgetExhausted")
        assert plants[plant]["message"] == (
            f"epsilon spent {one:.4g}; one more round would make it {two:.4g}, "
            f"above the budget {budget:g} (delta {DELTA:g})"
        )
    assert condition(fr, "Succeeded")["reason"] == "QuorumUnreachable"
    assert not any(agent.training_jobs("private-2") for agent in federation.agents.values())
