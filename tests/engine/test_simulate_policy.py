"""`plantfed simulate` runs the operator's policy: deadlines, stragglers, schedules, IfBetter, stop criteria.

Each test is one small campaign (tiny synthetic data, real `plantfed train` processes over real gRPC) whose
profile or campaign makes one policy decide; time is virtual, so deadlines and cadences cost nothing.
"""

from __future__ import annotations

import io
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from support.paths import REPO

from plantfed.cli import main
from plantfed.contract.api.model import FederatedModel
from plantfed.contract.api.participant import MaintenanceWindow
from plantfed.contract.api.round import LateUploadPolicy, PromotionPolicy, Strategy
from plantfed.contract.api.validation import load_manifests
from plantfed.contract.naming import API_VERSION
from plantfed.engine.store import ModelStore
from plantfed.sim.profile import FleetProfile, PlantProfile
from plantfed.sim.simulate import Simulation, SimulationConfig

TINY = {"recordings_per_class": "1", "seconds": "2.0"}

pytestmark = pytest.mark.slow


def run(tmp_path: Path, **fields) -> tuple[Simulation, dict]:
    fields.setdefault("data_options", dict(TINY))
    cfg = SimulationConfig(out=tmp_path / "run", epochs=1, **fields)
    sim = Simulation(cfg, console=Console(file=io.StringIO(), width=200))
    return sim, sim.run()


def at(report_time: str | None) -> datetime:
    assert report_time is not None
    return datetime.fromisoformat(report_time)


def test_stragglers_miss_the_deadline_and_maintenance_windows_skip_a_plant(tmp_path: Path) -> None:
    """A plant 1000× slower than this machine is Late every round, never aggregated, never stored (Reject);
    a plant in its maintenance window is Excluded; rounds start on the cadence, in virtual time."""
    profile = FleetProfile(
        plants={
            "plant-3": PlantProfile(slowdown=1000),
            "plant-2": PlantProfile(
                maintenance_windows=[MaintenanceWindow(schedule="0 12 * * *", duration_minutes=60)]
            ),
        }
    )
    sim, report = run(
        tmp_path, plants=3, rounds=2, deadline_seconds=60, min_participants=1, cadence="0 */6 * * *", profile=profile
    )
    r1, r2 = report["rounds"]
    start = FleetProfile().start
    assert at(r1["virtual_start"]) == start + timedelta(hours=6)
    assert at(r2["virtual_start"]) == start + timedelta(hours=12)
    assert report["seconds"] < 3600, "virtual time: the 12-hour schedule is not waited for"

    assert {p: (v["state"], v["reason"]) for p, v in r1["plants"].items()} == {
        "plant-1": ("Uploaded", None),
        "plant-2": ("Uploaded", None),
        "plant-3": ("Late", "DeadlineExceeded"),
    }
    assert {p: (v["state"], v["reason"]) for p, v in r2["plants"].items()} == {
        "plant-1": ("Uploaded", None),
        "plant-2": ("Excluded", "InMaintenance"),
        "plant-3": ("Late", "DeadlineExceeded"),
    }
    for r in (r1, r2):
        assert at(r["virtual_cutoff"]) == at(r["virtual_start"]) + timedelta(seconds=60)
        late = r["plants"]["plant-3"]
        assert at(late["virtual_start"]) == at(r["virtual_start"])
        # Its Job's activeDeadlineSeconds ends it at the deadline: the upload it computed never happens.
        assert at(late["virtual_finish"]) == at(r["virtual_cutoff"])
        assert "DeadlineExceeded" in late["error"]
        version = sim.store.get_model("bearing", r["version"])
        assert version.aggregation is not None and "plant-3" not in version.aggregation.plants
        assert sim.store.get_update(r["round_id"], "plant-3") is None
        assert late["num_samples"] == 0 and not late["metrics"]
    assert report["campaign"]["phase"] == "Completed" and report["campaign"]["stop_reason"] == "MaxRoundsReached"


def test_if_better_refuses_a_worse_candidate_after_the_plants_scored_it(tmp_path: Path) -> None:
    """A server step of 100 wrecks the model; the contributing plants score it, and IfBetter keeps version 1.

    plant-3 drops out (its profile's dropout is 1): it never returns and is Late at the deadline.
    """
    sim, report = run(
        tmp_path,
        plants=3,
        rounds=1,
        min_participants=2,
        deadline_seconds=120,
        strategy=Strategy(server_learning_rate=100),
        promotion=PromotionPolicy.IF_BETTER,
        promotion_metric="val_loss",
        profile=FleetProfile(plants={"plant-3": PlantProfile(dropout=1.0)}),
    )
    (r,) = report["rounds"]
    assert r["phase"] == "Succeeded" and not r["promoted"]
    assert "not promoted" in r["message"] and "is not below" in r["message"]
    assert r["plants"]["plant-3"]["state"] == "Late" and r["plants"]["plant-3"]["dropped"]
    assert r["virtual_cutoff"] is not None and at(r["virtual_cutoff"]) == at(r["virtual_start"]) + timedelta(minutes=2)
    for plant in ("plant-1", "plant-2"):
        assert set(r["plants"][plant]["evaluation"]) >= {"val_loss", "val_accuracy"}
    assert sim.store.promoted("bearing").version == 1
    reasons = [e["reason"] for e in report["events"]]
    assert "EvaluationRequested" in reasons and "NotPromoted" in reasons and "Promoted" not in reasons
    scored = {e.plant for e in sim.store.evaluations(r["round_id"])}
    assert scored == {"plant-1", "plant-2"}


@pytest.mark.parametrize("policy", [LateUploadPolicy.RECORD, LateUploadPolicy.REJECT])
def test_an_update_after_the_cutoff_meets_the_exchange_as_the_late_upload_policy_left_it(
    tmp_path: Path, policy: LateUploadPolicy
) -> None:
    """plant-2's agent is down when the round starts at 06:00 (it is assigned: its last heartbeat is fresh) and
    back at 06:01, 30 s before the deadline; its Job gets the 60 s minimum, and its slow link (~45 s for the
    model down and the update up) delivers the update after the 06:01:30 cutoff, at about 06:01:45. Record keeps
    the exchange open while plant-1 scores the candidate, which its own slow link (~30 s per model) makes last
    until about 06:02:00: the update is recorded, never aggregated. Reject closed the exchange at the cutoff and
    the agent cancels the Job: nothing reaches the store. Every margin is bytes over a link, not compute time,
    which a warm plant process and a loaded machine change."""
    window = MaintenanceWindow(schedule="0 6 * * *", duration_minutes=1)
    profile = FleetProfile(
        plants={
            "plant-1": PlantProfile(bandwidth_mbps=0.12),
            "plant-2": PlantProfile(slowdown=0.001, bandwidth_mbps=0.16, offline=[window]),
        }
    )
    sim, report = run(
        tmp_path,
        plants=2,
        rounds=1,
        min_participants=1,
        deadline_seconds=90,
        cadence="0 6 * * *",
        evaluation_timeout_s=600,
        late_upload_policy=policy,
        profile=profile,
    )
    (r,) = report["rounds"]
    six = FleetProfile().start + timedelta(hours=6)
    assert at(r["virtual_start"]) == six and at(r["virtual_cutoff"]) == six + timedelta(seconds=90)
    late = r["plants"]["plant-2"]
    assert at(late["virtual_start"]) == six + timedelta(minutes=1)
    assert late["state"] == "Late"
    version = sim.store.get_model("bearing", r["version"])
    assert version.aggregation is not None and set(version.aggregation.plants) == {"plant-1"}
    stored = sim.store.get_update(r["round_id"], "plant-2")
    if policy is LateUploadPolicy.RECORD:
        assert late["reason"] == "UploadedAfterCutoff" and late["num_samples"] > 0
        assert six + timedelta(seconds=90) < at(late["virtual_finish"]) < six + timedelta(minutes=2)
        assert stored is not None
        assert "LateUpload" in [e["reason"] for e in report["events"]]
    else:
        assert late["reason"] == "DeadlineExceeded"
        assert stored is None
        (job,) = [j for j in report["jobs"] if j["plant"] == "plant-2"]
        assert job["cancelled"] == "PlantLate"


def test_a_stop_target_ends_the_campaign(tmp_path: Path) -> None:
    _, report = run(tmp_path, plants=2, rounds=5, stop_metric="local_val_accuracy", stop_target=0.0)
    assert [r["round"] for r in report["rounds"]] == [1]
    assert report["campaign"]["stop_reason"] == "TargetReached"
    assert report["campaign"]["phase"] == "Completed"


def test_a_hung_plant_is_killed_at_the_timeout_and_the_round_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))
    _, report = run(
        tmp_path,
        plants=2,
        rounds=1,
        min_participants=1,
        task="support.sim_tasks:HangingBearingTask",
        data_options={**TINY, "hang": "plant-2"},
        plant_timeout_s=20,
        plant_processes="warm",  # the hung worker is killed; fresh processes are killed the same way
    )
    (r,) = report["rounds"]
    assert r["phase"] == "Succeeded" and r["promoted"]
    hung = r["plants"]["plant-2"]
    assert (hung["state"], hung["reason"]) == ("Failed", "TrainingFailed")
    assert "PlantTimeout" in hung["message"] and "killed" in hung["message"]
    assert r["plants"]["plant-1"]["state"] == "Uploaded"


def test_a_manifest_runs_as_written_and_the_flags_write_one(tmp_path: Path) -> None:
    manifest = tmp_path / "campaign.yaml"
    docs = [
        {
            "apiVersion": API_VERSION,
            "kind": "FederatedModel",
            "metadata": {"name": "press"},
            "spec": {
                "task": "bearing",
                "stop": {"maxRounds": 1},
                "roundTemplate": {
                    "plants": ["press-a", "press-b"],
                    "minParticipants": 2,
                    "deadlineSeconds": 600,
                    "training": {"epochs": 1, "batchSize": 64},
                    "strategy": {"name": "fedadam"},
                },
            },
        },
        *(
            {
                "apiVersion": API_VERSION,
                "kind": "PlantParticipant",
                "metadata": {"name": name},
                "spec": {
                    "plantId": name,
                    "data": {"pvc": {"claimName": "data"}},
                    "capacity": {"modelVariant": variant},
                },
            }
            for name, variant in (("press-a", "full"), ("press-b", "light"))
        ),
    ]
    manifest.write_text(yaml.safe_dump_all(docs))
    out = tmp_path / "run"
    argv = ["simulate", "-f", str(manifest), "--out", str(out)]
    for key, value in TINY.items():
        argv += ["--data-option", f"{key}={value}"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    (r,) = report["rounds"]
    assert r["round_id"] == "press-r1" and set(r["plants"]) == {"press-a", "press-b"}
    assert all(p["state"] == "Uploaded" for p in r["plants"].values())
    version = ModelStore(out / "hub" / "store").get_model("press", r["version"])
    assert version.aggregation is not None and version.aggregation.strategy == "fedadam"
    written = load_manifests(out / "campaign.yaml")
    assert [o.kind for o in written] == ["FederatedModel", "PlantParticipant", "PlantParticipant"]
    loaded = load_manifests(manifest)
    assert [o.kind for o in loaded] == [o.kind for o in written]
    assert isinstance(written[0], FederatedModel) and isinstance(loaded[0], FederatedModel)
    assert [o.model_dump() for o in written] == [o.model_dump() for o in loaded]
