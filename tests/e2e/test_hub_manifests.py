"""The Jobs the operator creates, checked without a cluster (the e2e tests run them for real).

Every CRD strategy must map to flags `plantfed aggregate` accepts and that arrive in its
StrategyConfig unchanged; a rename on either side fails here instead of in a crash-looping Job.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from plantfed.cli import build_parser
from plantfed.contract.api.model import InitialWeights
from plantfed.contract.api.round import Privacy, Strategy, StrategyName
from plantfed.contract.naming import API_VERSION
from plantfed.contract.records import Codec
from plantfed.engine.aggregation import StrategyConfig
from plantfed.hub.config import STORE_MOUNT, OperatorConfig
from plantfed.hub.jobs import aggregation_job, init_job_name, init_model_job, strategy_args
from plantfed.hub.reconcile.actions import CreateAggregationJob

CFG = OperatorConfig(
    namespace="hub",
    exchange="x:1",
    admin_token_file=Path("/t"),
    store_claim="store",
    image="img:1",
    aggregation_service_account="plantfed-aggregate",
)
ROUND = {
    "apiVersion": API_VERSION,
    "kind": "FederatedRound",
    "metadata": {"name": "bearing-r3", "namespace": "hub", "uid": "u-1"},
}


@pytest.mark.parametrize("name", list(StrategyName))
def test_every_strategy_reaches_the_aggregator_with_its_parameters(name):
    strategy = Strategy.model_validate(
        {
            "name": name.value,
            "serverLearningRate": 0.02,
            "beta1": 0.8,
            "beta2": 0.95,
            "tau": 0.01,
            "momentum": 0.7,
            "trimFraction": 0.2,
            "normBound": 3.0,
        }
    )
    args = build_parser().parse_args(["aggregate", "--store=s", "--round=r", *strategy_args(strategy)])
    config = StrategyConfig.from_arguments(args)
    assert config.name is name
    assert (config.norm_bound, config.server_learning_rate) == (3.0, 0.02)
    if name in (StrategyName.FEDADAM, StrategyName.FEDYOGI):
        assert (config.beta1, config.beta2, config.tau) == (0.8, 0.95, 0.01)
    if name is StrategyName.FEDAVGM:
        assert config.momentum == 0.7
    if name is StrategyName.TRIMMED_MEAN:
        assert config.trim_fraction == 0.2


def test_aggregation_job_runs_the_frozen_plants_without_api_credentials():
    action = CreateAggregationJob(
        name="bearing-r3-aggregate",
        round_id="bearing-r3",
        model="bearing",
        base_version=2,
        plants=("a", "b"),
        strategy=Strategy(),
        privacy=Privacy(),
        compression=Codec.FP16,
    )
    job = aggregation_job(CFG, action, ROUND)
    assert job["metadata"]["name"] == "bearing-r3-aggregate" and job["metadata"]["namespace"] == "hub"
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": API_VERSION,
            "kind": "FederatedRound",
            "name": "bearing-r3",
            "uid": "u-1",
            "controller": True,
        }
    ]
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "plantfed-aggregate"
    (container,) = pod["containers"]
    assert container["command"] == [
        "plantfed",
        "aggregate",
        f"--store={STORE_MOUNT}",
        "--round=bearing-r3",
        "--plants=a,b",
        "--strategy=fedavg",
        "--server-learning-rate=1.0",
    ]
    assert pod["volumes"][0] == {"name": "store", "persistentVolumeClaim": {"claimName": "store"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"] and job["spec"]["backoffLimit"] == CFG.job_backoff_limit
    assert build_parser().parse_args(container["command"][1:]).plants == "a,b"


def test_aggregation_job_names_the_models_task_so_personal_layers_stay_out():
    action = CreateAggregationJob(
        name="j",
        round_id="r",
        model="m",
        base_version=1,
        plants=("a",),
        strategy=Strategy(),
        privacy=Privacy(),
        compression=Codec.NONE,
    )
    command = aggregation_job(CFG, action, ROUND, task="bearing")["spec"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert command[-1] == "--task=bearing" and build_parser().parse_args(command[1:]).task == "bearing"


def test_aggregation_job_refuses_an_empty_plant_set():
    action = CreateAggregationJob(
        name="j",
        round_id="r",
        model="m",
        base_version=1,
        plants=(),
        strategy=Strategy(),
        privacy=Privacy(),
        compression=Codec.NONE,
    )
    with pytest.raises(ValueError, match="no plants to aggregate"):
        aggregation_job(CFG, action, ROUND)


@pytest.mark.parametrize(
    "weights, expected",
    [
        (InitialWeights(seed=42), ["--seed=42"]),
        (
            InitialWeights.model_validate({"fromVersion": {"model": "base", "version": 7}}),
            ["--from-model=base", "--from-version=7"],
        ),
    ],
)
def test_init_job_command_parses(weights, expected):
    model = {
        "apiVersion": API_VERSION,
        "kind": "FederatedModel",
        "metadata": {"name": "bearing", "namespace": "hub", "uid": "u-2"},
    }
    job = init_model_job(CFG, "bearing", "bearing", "full", weights, model)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["plantfed", "init-model"] and command[-len(expected) :] == expected
    build_parser().parse_args(command[1:])
    assert job["metadata"]["name"] == "bearing-init"


def test_init_job_name_fits_a_label():
    name = init_job_name("m" * 63)
    assert len(name) <= 63 and name.endswith("-init") and name != init_job_name("m" * 62 + "n")


def test_central_privacy_clips_at_the_hub_and_noises_the_aggregate():
    privacy = Privacy.model_validate({"mode": "central", "clipNorm": 2.0, "noiseMultiplier": 0.7})
    args = strategy_args(Strategy(), privacy)
    config = StrategyConfig.from_arguments(build_parser().parse_args(["aggregate", "--store=s", "--round=r", *args]))
    assert (config.norm_bound, config.central_noise_multiplier) == (2.0, 0.7)
    local = Privacy.model_validate({"mode": "local", "clipNorm": 2.0, "noiseMultiplier": 0.7})
    # plants noised their own updates; the hub adds nothing
    assert strategy_args(Strategy(), local) == ["--strategy=fedavg", "--server-learning-rate=1.0"]


@pytest.mark.parametrize("mode", ["local", "central"])
def test_a_private_round_reports_epsilon_at_its_own_delta(mode):
    privacy = Privacy.model_validate({"mode": mode, "clipNorm": 2.0, "noiseMultiplier": 0.7, "delta": 3e-6})
    action = CreateAggregationJob(
        name="j",
        round_id="bearing-r3",
        model="bearing",
        base_version=1,
        plants=("a",),
        strategy=Strategy(),
        privacy=privacy,
        compression=Codec.NONE,
    )
    command = aggregation_job(CFG, action, ROUND)["spec"]["template"]["spec"]["containers"][0]["command"]
    assert build_parser().parse_args(command[1:]).dp_delta == 3e-6
