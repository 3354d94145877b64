"""The API server enforces a CRD's structural schema and its CEL rules."""

from __future__ import annotations

import secrets

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support.kube import wait_for

RULE_MESSAGE = "minPlants must not exceed maxPlants"


@pytest.fixture
def crd(control_plane):
    group = f"t{secrets.token_hex(3)}.test.plantfed.dev"
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"rounds.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "rounds", "singular": "round", "kind": "Round"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["minPlants", "maxPlants"],
                                    "properties": {
                                        "minPlants": {"type": "integer", "minimum": 1},
                                        "maxPlants": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {"rule": "self.minPlants <= self.maxPlants", "message": RULE_MESSAGE}
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    with control_plane.api_client() as api:
        extensions = client.ApiextensionsV1Api(api)
        extensions.create_custom_resource_definition(body)

        def established():
            crd = extensions.read_custom_resource_definition(body["metadata"]["name"])
            return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

        wait_for(established, timeout=60, what="CRD Established")
        yield group
        extensions.delete_custom_resource_definition(body["metadata"]["name"])


def _round(name: str, min_plants: int, max_plants: int) -> dict:
    return {"kind": "Round", "metadata": {"name": name}, "spec": {"minPlants": min_plants, "maxPlants": max_plants}}


def test_cel_rule_rejects_invalid_object_with_its_message(control_plane, namespace, crd):
    with control_plane.api_client() as api:
        objects = client.CustomObjectsApi(api)

        def create_valid():
            # Serving a fresh CRD can lag its Established condition a little: retry 404 only.
            try:
                return objects.create_namespaced_custom_object(
                    crd, "v1", namespace, "rounds", {**_round("ok", 2, 3), "apiVersion": f"{crd}/v1"}
                )
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        created = wait_for(create_valid, timeout=30, what="the new resource to be served")
        assert created["spec"] == {"minPlants": 2, "maxPlants": 3}

        with pytest.raises(ApiException) as refused:
            objects.create_namespaced_custom_object(
                crd, "v1", namespace, "rounds", {**_round("bad", 4, 3), "apiVersion": f"{crd}/v1"}
            )
        assert refused.value.status == 422
        assert RULE_MESSAGE in refused.value.body

        with pytest.raises(ApiException) as schema:
            objects.create_namespaced_custom_object(
                crd, "v1", namespace, "rounds", {**_round("zero", 0, 3), "apiVersion": f"{crd}/v1"}
            )
        assert schema.value.status == 422
        assert "spec.minPlants" in schema.value.body
