"""`helm test` of the plant chart: the agent's credentials reach the hub as this plant, or say what is wrong.

Run against the session's federation (two plants, each with its own cluster and release). A plant whose
Secret holds another plant's exchange token is the mistake this catches that a plain health check cannot:
every call would succeed, as the wrong plant.
"""

from __future__ import annotations

import base64

from kubernetes import client
from support.federation.world import Federation


def test_helm_test_passes_on_every_plant(federation: Federation) -> None:
    for plant, agent in federation.agents.items():
        result = agent.helm_test()
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"takes this token for plant {plant!r}" in result.stdout, result.stdout
        assert f"shows PlantParticipant {plant!r}" in result.stdout, result.stdout


def test_helm_test_names_the_plant_a_wrong_token_belongs_to(federation: Federation) -> None:
    (plant, agent), (other, _) = sorted(federation.agents.items())[:2]
    secret = "plantfed-hub-credentials"
    with agent.cluster.api_client() as api:
        core = client.CoreV1Api(api)
        kept = core.read_namespaced_secret(secret, agent.namespace).data["token"]
        wrong = base64.b64encode(federation.hub.plant_tokens[other].encode()).decode()
        core.patch_namespaced_secret(secret, agent.namespace, {"data": {"token": wrong}})
        try:
            result = agent.helm_test()
        finally:
            core.patch_namespaced_secret(secret, agent.namespace, {"data": {"token": kept}})
    assert result.returncode != 0
    assert f"takes this token for plant {other!r}, not for plant {plant!r}" in result.stdout, result.stdout
