"""One strategy vocabulary: the operator and `plantfed simulate` aggregate the same spec bit for bit.

Operator path: a FederatedRound manifest → `reconcile_round` → CreateAggregationJob → the Job manifest
(`hub.jobs.aggregation_job`) → its container command → the real `plantfed aggregate` command line.
Simulate path: `plantfed simulate` flags → the simulate parser → the FederatedModel simulate builds → its
round → `reconcile_round` → the simulation's local executor running the Job's command.
Both start from copies of one store holding the same committed updates.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch

from plantfed.cli import build_parser, main, simulation_config
from plantfed.contract.api.participant import PlantParticipantStatus
from plantfed.contract.api.round import FederatedRound, Strategy
from plantfed.contract.metrics import Metrics
from plantfed.contract.naming import API_VERSION
from plantfed.contract.records import Codec, RoundRecord, UpdateMeta
from plantfed.contract.strategies import PARAMETERS, STRATEGIES, StrategyName, command_args
from plantfed.engine.aggregation import StrategyConfig
from plantfed.engine.store import ModelStore
from plantfed.formats import codecs
from plantfed.hub.config import STORE_MOUNT, OperatorConfig
from plantfed.hub.jobs import aggregation_job, strategy_args
from plantfed.hub.reconcile import CreateAggregationJob, ObservedRound, Upload, new_round, reconcile_round
from plantfed.hub.telemetry import Telemetry
from plantfed.sim.campaign import participants_for
from plantfed.sim.hub import LocalOperator, Visibility
from plantfed.sim.simulate import Simulation

MODEL, ROUND = "bearing", "bearing-r1"
PLANTS = ["plant-1", "plant-2", "plant-3"]
SAMPLES = {"plant-1": 37, "plant-2": 250, "plant-3": 113}
SHAPES = {"conv.weight": (6, 3, 5), "conv.bias": (6,), "fc.weight": (4, 24), "fc.bias": (4,)}
NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
CFG = OperatorConfig(namespace="hub", exchange="x:1", admin_token_file=Path("/t"), store_claim="s", image="i")

# The spec in both spellings: CRD fields for the manifest, flags for simulate. Odd values check that floats
# reach the aggregation exactly (a `:g`-formatted flag would round 0.7312345678901 to 0.731235).
EXPLICIT = {
    "server_learning_rate": 0.7312345678901,
    "beta1": 0.83,
    "beta2": 0.9712,
    "tau": 0.0031,
    "momentum": 0.61,
    "trim_fraction": 0.34,
    "norm_bound": 2.5,
}
CENTRAL = {"clipNorm": 0.8, "noiseMultiplier": 0.9}


def committed_store(root: Path) -> ModelStore:
    """Version 1 of the model and one committed update per plant in the open round `ROUND`."""
    store = ModelStore(root)
    g = torch.Generator().manual_seed(12)
    base = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}
    codecs.save_state(base, root / "base.safetensors")
    version = store.publish_model(MODEL, store.import_file(root / "base.safetensors")[0], promote=True)
    store.open_round(RoundRecord(round_id=ROUND, model=MODEL, base_version=version.version, plants=PLANTS))
    for i, plant in enumerate(PLANTS):
        # Different directions and sizes per plant, one outlier, so robust and mean strategies disagree.
        delta = {n: (0.1 + i) * torch.randn(s, generator=g) for n, s in SHAPES.items()}
        path = root / f"{plant}.safetensors"
        codecs.write_update(codecs.encode_delta(delta, Codec.NONE), path, Codec.NONE)
        digest, size = store.import_file(path)
        meta = UpdateMeta(
            plant=plant, round_id=ROUND, base_version=1, num_samples=SAMPLES[plant], total_bytes=size, sha256=digest
        )
        store.commit_update(meta, digest)
    return store


def participants() -> list[Any]:
    fresh = PlantParticipantStatus(last_heartbeat_time=NOW)
    return [pp.model_copy(update={"status": fresh}) for pp in participants_for(PLANTS)]


def aggregation_action(fr: FederatedRound, store: ModelStore) -> tuple[FederatedRound, CreateAggregationJob]:
    """Drive the operator's reconcile_round from a new round to its CreateAggregationJob, observing `store`."""
    plants = participants()
    promoted = store.promoted(MODEL)
    started = reconcile_round(fr, plants, ObservedRound(promoted=promoted), NOW)
    fr = fr.model_copy(update={"status": started.status})
    uploads = tuple(Upload.from_record(u) for u in store.updates(ROUND))
    observed = ObservedRound(uploads=uploads, exchange=store.get_round(ROUND), promoted=promoted)
    decision = reconcile_round(fr, plants, observed, NOW)
    (action,) = [a for a in decision.actions if isinstance(a, CreateAggregationJob)]
    return fr.model_copy(update={"status": decision.status}), action


def command_of(job: dict[str, Any]) -> list[str]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return list(container["command"])


def operator_path(root: Path, strategy: dict[str, Any], privacy: dict[str, Any], seed: int | None) -> list[str]:
    store = committed_store(root)
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "FederatedRound",
        "metadata": {"name": ROUND, "namespace": "hub", "uid": "u-1"},
        "spec": {"modelRef": MODEL, "plants": PLANTS, "minParticipants": 3, "strategy": strategy, "privacy": privacy},
    }
    fr, action = aggregation_action(FederatedRound.from_object(manifest), store)
    command = command_of(aggregation_job(CFG, action, manifest, task="bearing"))  # the FederatedModel's task
    assert command[:3] == ["plantfed", "aggregate", f"--store={STORE_MOUNT}"]
    argv = [f"--store={root}" if a == f"--store={STORE_MOUNT}" else a for a in command[1:]]
    assert main([*argv, *([f"--noise-seed={seed}"] if seed is not None else [])]) == 0
    return command


def simulate_path(root: Path, flags: list[str], seed: int | None) -> list[str]:
    store = committed_store(root)
    argv = ["simulate", "--plants", "3", "--min-participants", "3", "--out", str(root / "run"), *flags]
    if seed is not None:
        argv += ["--noise-seed", str(seed)]
    sim = Simulation(simulation_config(build_parser().parse_args(argv)))
    fm = sim.campaign.model
    fr = new_round(fm, 1)
    fr = fr.model_copy(update={"metadata": fr.metadata.model_copy(update={"namespace": "hub", "uid": "u-1"})})
    fr, action = aggregation_action(fr, store)
    overrides = sim.cfg.aggregation_overrides
    operator = LocalOperator(
        CFG,
        admin=None,  # aggregation needs no exchange call
        store_root=root,
        telemetry=Telemetry(Metrics()),
        visibility=Visibility(lambda *_: True, lambda *_: True),
        aggregate_args=tuple(f"{PARAMETERS[k].flag}={v!r}" for k, v in overrides.items()),
    )
    operator.models[fm.name] = fm
    operator.execute(fr, (action,), NOW)
    job = operator.jobs[action.name]
    assert job.succeeded, job.message
    return command_of(aggregation_job(CFG, action, fr.to_dict(), fm.spec.task))


def aggregate_of(root: Path) -> tuple[bytes, dict[str, Any]]:
    store = ModelStore(root)
    (version,) = [v for v in store.versions(MODEL) if v.round_id == ROUND]
    state = root / "server-state" / MODEL / f"after-v{version.version}"
    optimizer = b"".join(p.read_bytes() for p in sorted(state.glob("*"))) if state.exists() else b""
    summary = version.aggregation.model_dump() if version.aggregation else {}
    summary.pop("seconds", None)
    return store.blob_path(version.digest).read_bytes() + optimizer, summary


def crd_spec(name: StrategyName, explicit: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name.value}
    if explicit:
        spec.update({PARAMETERS[p].field: v for p, v in EXPLICIT.items()})
    return spec


def flags_of(name: StrategyName, explicit: bool) -> list[str]:
    # The alias spelling on the command line, the canonical one in the manifest: both must mean the same.
    flags = ["--strategy", name.alias]
    if explicit:
        for p, v in EXPLICIT.items():
            flags += [PARAMETERS[p].flag, repr(v)]
    return flags


CASES = [
    pytest.param(
        name,
        explicit,
        central,
        id=f"{name.value}-{'explicit' if explicit else 'defaults'}" + ("-central-dp" if central else ""),
    )
    for name in StrategyName
    for explicit in (False, True)
    for central in ((False, True) if not STRATEGIES[name].robust else (False,))
]


@pytest.mark.parametrize(("name", "explicit", "central"), CASES)
def test_operator_and_simulate_aggregate_the_same_spec_bit_for_bit(
    tmp_path: Path, name: StrategyName, explicit: bool, central: bool
) -> None:
    seed = 11 if central else None
    privacy = {"mode": "central", **CENTRAL} if central else {}
    flags = flags_of(name, explicit)
    if central:
        if not explicit:  # central DP clips at privacy.clipNorm; the flag spelling of that is --norm-bound
            flags += ["--norm-bound", repr(CENTRAL["clipNorm"])]
        flags += ["--central-noise-multiplier", repr(CENTRAL["noiseMultiplier"])]
        if explicit:
            privacy["clipNorm"] = EXPLICIT["norm_bound"]
    op_command = operator_path(tmp_path / "operator", crd_spec(name, explicit), privacy, seed)
    sim_command = simulate_path(tmp_path / "simulate", flags, seed)
    assert sim_command == op_command
    op_bytes, op_summary = aggregate_of(tmp_path / "operator")
    sim_bytes, sim_summary = aggregate_of(tmp_path / "simulate")
    assert sim_bytes == op_bytes
    assert sim_summary == op_summary
    shutil.rmtree(tmp_path)


def test_central_dp_noise_really_is_seeded_and_really_is_added(tmp_path: Path) -> None:
    """The bit-identical central-DP cases above are not vacuous: the seed decides the aggregate."""
    spec = crd_spec(StrategyName.FEDAVG, False)
    privacy = {"mode": "central", **CENTRAL}
    operator_path(tmp_path / "a", spec, privacy, 11)
    operator_path(tmp_path / "b", spec, privacy, 12)
    operator_path(tmp_path / "c", spec, {}, None)
    a, b, c = (aggregate_of(tmp_path / x)[0] for x in "abc")
    assert len({a, b, c}) == 3


# -- the defaults ---------------------------------------------------------------------------------------------


def test_adaptive_and_momentum_defaults_are_the_literatures() -> None:
    """Reddi et al. 2021 (β1 0.9, β2 0.99; τ 1e-3 and η 0.01 from its grids), Hsu et al. 2019 (β 0.9, η 1)."""
    for name in (StrategyName.FEDADAM, StrategyName.FEDYOGI):
        cfg = StrategyConfig(name=name)
        assert (cfg.server_learning_rate, cfg.beta1, cfg.beta2, cfg.tau) == (0.01, 0.9, 0.99, 1e-3)
    cfg = StrategyConfig(name=StrategyName.FEDAVGM)
    assert (cfg.server_learning_rate, cfg.momentum) == (1.0, 0.9)
    for name in (StrategyName.FEDAVG, StrategyName.FEDPROX, StrategyName.TRIMMED_MEAN, StrategyName.MEDIAN):
        assert StrategyConfig(name=name).server_learning_rate == 1.0
    assert StrategyConfig(name=StrategyName.TRIMMED_MEAN).trim_fraction == 0.1


def test_a_fedadam_round_reaches_its_job_with_the_adaptive_step() -> None:
    """The issue's drift: `strategy: {name: fedadam}` used to reach the Job as --server-lr=1."""
    args = strategy_args(Strategy.model_validate({"name": "fedadam"}))
    assert args == [
        "--strategy=fedadam",
        "--server-learning-rate=0.01",
        "--beta1=0.9",
        "--beta2=0.99",
        "--tau=0.001",
    ]
    simulate = simulation_config(build_parser().parse_args(["simulate", "--strategy", "fedadam"]))
    assert strategy_args(simulate.strategy) == args


def test_every_strategy_and_parameter_has_one_spelling_per_surface() -> None:
    """CRD fields, flags and engine fields are derived names of one parameter, for every parameter."""
    crd = set(Strategy.model_json_schema(by_alias=True)["properties"]) - {"name"}
    assert crd == {p.field for p in PARAMETERS.values() if p.crd}
    assert set(StrategyConfig.model_fields) - {"name"} == set(PARAMETERS)
    parser = build_parser()
    for name in StrategyName:
        for p in STRATEGIES[name].parameters:
            value = 7 if PARAMETERS[p].integer else 0.25
            given = {p: value}
            if p == "central_noise_multiplier":
                given["norm_bound"] = 1.0
            args = parser.parse_args(["aggregate", "--store=s", "--round=r", *command_args(name, given)])
            assert getattr(StrategyConfig.from_arguments(args), p) == value, (name, p)


def test_old_spellings_still_parse_but_the_crd_takes_only_the_canonical_one() -> None:
    args = build_parser().parse_args(
        ["aggregate", "--store=s", "--round=r", "--strategy=trimmed_mean", "--server-lr=0.5", "--server-momentum=0.2"]
    )
    cfg = StrategyConfig.from_arguments(args)
    assert (cfg.name, cfg.server_learning_rate, cfg.momentum) == (StrategyName.TRIMMED_MEAN, 0.5, 0.2)
    assert Strategy.model_validate({"name": "trimmedMean"}).name is StrategyName.TRIMMED_MEAN
    with pytest.raises(ValueError, match="trimmed_mean"):
        Strategy.model_validate({"name": "trimmed_mean"})


def test_bad_strategy_flags_name_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, words in (
        (["--strategy=krum"], "unknown strategy 'krum'"),
        (["--tau=0"], "tau must be greater than 0"),
        (["--beta1=one"], "--beta1 expects a number"),
    ):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["aggregate", "--store=s", "--round=r", *argv])
        assert words in capsys.readouterr().err
    with pytest.raises(ValueError, match="calibrated for a weighted mean, not median"):
        StrategyConfig(name="median", norm_bound=1.0, central_noise_multiplier=1.0)
