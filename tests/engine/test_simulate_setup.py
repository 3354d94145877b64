"""What a rehearsal is made of, checked without running it: campaigns, profiles, virtual-time rules.

The runs themselves are in test_simulate_policy.py (the policy decisions) and test_simulate.py (learning).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.paths import REPO

from plantfed.cli import build_parser, main, simulation_config
from plantfed.contract.api.participant import MaintenanceWindow
from plantfed.contract.api.round import LateUploadPolicy, PrivacyMode, RoundTemplate
from plantfed.contract.naming import API_VERSION
from plantfed.contract.records import UpdateMeta
from plantfed.contract.strategies import StrategyName
from plantfed.hub.reconcile import select_plants
from plantfed.hub.reconcile.readiness import DEFAULT_HEARTBEAT_TIMEOUT
from plantfed.plant.agent.decide import TrainingSpec
from plantfed.sim.campaign import CampaignError, from_manifests, participants_for
from plantfed.sim.plants import Fleet, LocalSettings, PlantJob, PlantSetup
from plantfed.sim.profile import FleetProfile, ProfileError, load_profile, with_flags
from plantfed.sim.simulate import Simulation

START = FleetProfile().start


def config(*flags: str):
    return simulation_config(build_parser().parse_args(["simulate", *flags]))


# -- campaigns ---------------------------------------------------------------------------------------------


def test_flags_write_the_federated_model_a_manifest_would(tmp_path: Path) -> None:
    sim = Simulation(
        config(
            "--plants",
            "4",
            "--holdout",
            "1",
            "--rounds",
            "7",
            "--strategy",
            "fedyogi",
            "--clip-norm",
            "1",
            "--noise-multiplier",
            "0.5",
            "--epsilon-budget",
            "8",
            "--late-uploads",
            "Record",
            "--cadence",
            "0 */6 * * *",
            "--out",
            str(tmp_path / "run"),
        )
    )
    fm = sim.campaign.model
    t = fm.spec.round_template
    assert (fm.spec.stop.max_rounds, fm.spec.cadence) == (7, "0 */6 * * *")
    assert t.plants == ["plant-1", "plant-2", "plant-3"] and t.min_participants == 2
    assert t.strategy.name is StrategyName.FEDYOGI and t.strategy.server_learning_rate is None
    assert (t.privacy.mode, t.privacy.clip_norm, t.privacy.noise_multiplier) == (PrivacyMode.LOCAL, 1.0, 0.5)
    assert t.privacy.epsilon_budget == 8 and t.late_upload_policy is LateUploadPolicy.RECORD
    assert (t.training.batch_size, t.promotion.evaluation_timeout_seconds) == (64, 0)
    assert sim.plants == ["plant-1", "plant-2", "plant-3"] and sim.holdout == ["plant-4"]


def test_model_name_and_local_momentum_are_flags_and_reach_every_plant(tmp_path: Path) -> None:
    sim = Simulation(config("--model-name", "rul-press", "--sgd-momentum", "0.5", "--out", str(tmp_path / "run")))
    assert sim.model_name == sim.campaign.model.name == "rul-press"
    assert sim.campaign.model.spec.round_template.training.momentum == 0.5
    default = Simulation(config("--out", str(tmp_path / "default")))
    assert (default.model_name, default.campaign.model.spec.round_template.training.momentum) == ("bearing", 0.9)


def test_simulate_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "--plants PLANTS plants to create when no PlantParticipants are given (default: 3)",
        "--sgd-momentum SGD_MOMENTUM local SGD momentum (not --momentum, the hub's FedAvgM momentum) (default: 0.9)",
        "--batch-size BATCH_SIZE (default: 64)",
        "--out OUT run directory (must not hold a run) (default: runs/simulate)",
        "the FederatedModel's name (default bearing; with -f: the manifest's)",
    ):
        assert shown in text, shown


def test_plant_names_come_from_the_task_and_a_bad_data_path_fails_before_anything_starts(tmp_path: Path) -> None:
    for name in ("lyon", "brno"):
        (tmp_path / "plants" / name).mkdir(parents=True)
        (tmp_path / "plants" / name / "r.npz").write_bytes(b"")  # names come from the directory, no file is read
    sim = Simulation(config("--plants", "2", "--data", str(tmp_path / "plants"), "--out", str(tmp_path / "run")))
    assert sim.plant_names == {"plant-1": "brno", "plant-2": "lyon"}
    with pytest.raises(ValueError, match="is one plant's data, but num_plants=2"):
        Simulation(config("--plants", "2", "--data", str(tmp_path / "plants" / "lyon"), "--out", str(tmp_path / "x")))


def test_the_example_campaign_gets_plants_its_selector_matches() -> None:
    campaign = from_manifests([REPO / "examples" / "model.yaml"], plants=3, task="bearing", seed=0, rounds=None)
    assert campaign.model.spec.stop.max_rounds == 50
    assert campaign.model.spec.round_template.strategy.name is StrategyName.FEDADAM
    assert [pp.metadata.labels for pp in campaign.participants] == [{"region": "eu"}] * 3
    capped = from_manifests([REPO / "examples" / "model.yaml"], plants=3, task="bearing", seed=0, rounds=2)
    assert capped.model.spec.stop.max_rounds == 2


def test_a_hand_written_round_runs_against_a_suspended_model_of_the_same_name() -> None:
    campaign = from_manifests([REPO / "examples" / "round.yaml"], plants=3, task="bearing", seed=4, rounds=None)
    assert campaign.model.name == "bearing" and campaign.model.spec.suspend
    assert campaign.model.spec.initial_weights.seed == 4
    assert [r.name for r in campaign.rounds] == ["bearing-hotfix-1"]
    assert campaign.plant_names == ["stuttgart-press3", "lyon-press1", "brno-lathe2"]


def write(tmp_path: Path, *docs: dict) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump_all(list(docs)))
    return path


MODEL: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "FederatedModel",
    "metadata": {"name": "m"},
    "spec": {"task": "bearing", "stop": {"maxRounds": 2}, "roundTemplate": {"plants": ["a", "b"]}},
}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"roundTemplate": {"plants": ["a", "b"], "deadlineSeconds": 5}}, "spec.roundTemplate.deadlineSeconds"),
        ({"roundTemplate": {"plants": ["a"], "strategy": {"name": "krum"}}}, "spec.roundTemplate.strategy.name"),
        ({"stop": {}}, "no stop.maxRounds"),
        ({"cadence": "every day"}, "spec.cadence"),
    ],
)
def test_invalid_manifests_are_refused_with_the_field_path(tmp_path: Path, change: dict[str, Any], words: str) -> None:
    doc = {**MODEL, "spec": {**MODEL["spec"], **change}}
    with pytest.raises(CampaignError, match=words):
        from_manifests([write(tmp_path, doc)], plants=3, task="bearing", seed=0, rounds=None)


def test_the_cli_refuses_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write(tmp_path, MODEL)
    out = tmp_path / "run"
    for argv, words in (
        (["-f", str(manifest), "--epochs", "3"], "--epochs describe the campaign, which -f already does"),
        (["-f", str(manifest), "--server-lr", "3"], "--server-learning-rate describe the campaign"),
        (["-f", str(manifest), "--model-name", "x"], "--model-name describe the campaign"),
        (["--plants", "2", "--data", str(tmp_path)], "no CWRU load files, plant-data .npz files or plant directories"),
        (["--clip-norm", "1"], "--clip-norm without --noise-multiplier"),
        (["--central-noise-multiplier", "1"], "needs --norm-bound"),
        (
            ["--central-noise-multiplier", "1", "--norm-bound", "1", "--noise-multiplier", "1", "--clip-norm", "1"],
            "two privacy modes",
        ),
        (["--learning-rate", "50"], "learning_rate: Input should be less than or equal to 10"),
        (["--plant-slowdown", "0"], "slowdown"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["simulate", "--out", str(out), *argv])
        assert words in str(exit_.value), argv
        assert not out.exists()


# -- profiles ----------------------------------------------------------------------------------------------


def test_the_example_profile_loads_and_resolves_per_plant() -> None:
    profile = load_profile(REPO / "examples" / "simulate" / "fleet.yaml")
    assert profile.resolve("plant-1").slowdown == 1.0 and profile.resolve("plant-1").bandwidth_mbps == 100
    slow = profile.resolve("plant-2")
    assert (slow.slowdown, slow.bandwidth_mbps) == (6.0, 4)
    assert slow.transfer_seconds(1_000_000) == pytest.approx(2.0)
    assert profile.resolve("plant-3").maintenance_windows[0].duration_minutes == 120


def test_profile_errors_name_the_plant_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("plants:\n  plant-2: {slowdown: -1, dropuot: 0.1}\n")
    with pytest.raises(ProfileError) as err:
        load_profile(bad)
    assert "plants.plant-2.slowdown: Input should be greater than 0" in str(err.value)
    assert "plants.plant-2.dropuot: Extra inputs are not permitted" in str(err.value)
    with pytest.raises(ProfileError, match="names plant-9, which this simulation does not have"):
        FleetProfile(plants={"plant-9": {}}).check_plants(["plant-1"])


def test_profile_flags_set_every_plant_or_one() -> None:
    profile = with_flags(FleetProfile(), {"--plant-slowdown": ["4", "plant-2=10"], "--plant-dropout": ["plant-3=1"]})
    assert [profile.resolve(p).slowdown for p in ("plant-1", "plant-2")] == [4, 10]
    assert (profile.resolve("plant-3").dropout, profile.resolve("plant-1").dropout) == (1, 0)
    for values, words in ((["x"], "expects VALUE or PLANT=VALUE"), (["=3"], "name the plant"), (["2"], "less than")):
        with pytest.raises(ProfileError, match=words):
            with_flags(FleetProfile(), {"--plant-dropout": values})


# -- virtual time ------------------------------------------------------------------------------------------


def fleet(profile: FleetProfile, names: list[str]) -> Fleet:
    setups = [PlantSetup(n, i, Path("/nonexistent") / n, profile.resolve(n)) for i, n in enumerate(names)]
    return Fleet(
        setups,
        LocalSettings(exchange="x", task="bearing", num_plants=len(names)),
        lambda m, v: 0,
        DEFAULT_HEARTBEAT_TIMEOUT,
    )


def test_an_offline_agent_stops_heartbeating_and_the_operator_leaves_it_out() -> None:
    window = MaintenanceWindow(schedule="0 2 * * *", duration_minutes=60)
    f = fleet(FleetProfile(plants={"b": {"offline": [window]}}), ["a", "b"])
    plants = {pp.name: pp for pp in participants_for(["a", "b"])}
    template = RoundTemplate(plants=["a", "b"], min_participants=1)
    for minutes, ready in ((119, {"a", "b"}), (121, {"a", "b"}), (123, {"a"}), (181, {"a", "b"})):
        now = START + timedelta(minutes=minutes)
        f.heartbeat(now, plants)
        assert set(select_plants(template, list(plants.values()), now).eligible) == ready, minutes
    assert plants["b"].status.last_heartbeat_time == START + timedelta(minutes=181)
    events = f.schedule_events(START + timedelta(minutes=30))
    assert START + timedelta(hours=2) in events and START + timedelta(hours=2, seconds=91) in events


def job(start_minutes: float = 0) -> PlantJob:
    spec = TrainingSpec(
        round="m-r1",
        round_uid="u",
        model="m",
        task="bearing",
        variant="full",
        gpus=0,
        cpu="1",
        memory="1Gi",
        node_selector={},
        tolerations=(),
        epochs=1,
        batch_size=8,
        learning_rate=0.1,
        optimizer="sgd",
        fedprox_mu=0.0,
        codec="none",
        clip_norm=0.0,
        noise_multiplier=0.0,
        data_sub_path="",
        active_deadline_seconds=600,
    )
    begin = START + timedelta(minutes=start_minutes)
    return PlantJob("a", spec, begin, begin + timedelta(seconds=600), begin + timedelta(seconds=300), 0, [], Path("/x"))


def test_an_upload_is_seen_only_once_its_virtual_arrival_has_passed() -> None:
    f = fleet(FleetProfile(plants={"a": {"slowdown": 10, "bandwidthMbps": 8}}), ["a"])
    j = job()
    f.jobs.append(j)
    meta = UpdateMeta(
        plant="a",
        round_id="m-r1",
        base_version=1,
        num_samples=5,
        train_seconds=12.0,
        total_bytes=1_000_000,
        sha256="0" * 64,
    )
    assert f.on_upload(meta) is None  # 12 s × 10 + 1 MB at 8 Mbit/s = 121 s: before the deadline, not held
    assert j.arrival == START + timedelta(seconds=121)
    assert not f.upload_visible("m-r1", "a", START + timedelta(seconds=120))
    assert f.upload_visible("m-r1", "a", START + timedelta(seconds=121))

    late = job()
    f.jobs[:] = [late]
    hold = f.on_upload(meta.model_copy(update={"train_seconds": 40.0}))  # 401 s: after the deadline
    assert hold is not None and late.held and late.known and not f.admitted(meta)
    f.release(START + timedelta(seconds=300))
    assert late.held, "not before its arrival"

    doomed = job()
    f.jobs[:] = [doomed]
    assert f.on_upload(meta.model_copy(update={"train_seconds": 70.0})) is not None  # 701 s: past its Job
    assert (doomed.succeeded, doomed.finish) == (False, doomed.kill_at) and "DeadlineExceeded" in doomed.message
    assert not f.upload_visible("m-r1", "a", START + timedelta(hours=1))
