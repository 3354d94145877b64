"""The agent's decisions, without a cluster: when a plant trains, what it reports, what it caches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_objects import NOW, fm, fr, later, pp

from plantfed.contract.api.participant import AssignmentState
from plantfed.contract.api.round import RoundEvaluation
from plantfed.plant.agent.config import AgentConfig
from plantfed.plant.agent.decide import (
    AgentView,
    CancelTrainingJob,
    CreateTrainingJob,
    RefreshModel,
    ReportAssignment,
    decide,
)
from plantfed.plant.agent.jobspec import train_command, training_args
from plantfed.plant.agent.observe import TrainingObservation, TrainingPhase


def view(rounds=(), trainings=None, participant=None, models=None, cached=None, max_gpus=1, now=NOW, **kw: Any):
    return AgentView(
        plant="plant-a",
        participant=participant if participant is not None else pp(),
        rounds=list(rounds),
        models=models if models is not None else {"bearing": fm()},
        trainings=trainings or {},
        cached=cached or {},
        max_gpus=max_gpus,
        now=now,
        **kw,
    )


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def job(round_name: str, phase: TrainingPhase, reason: str = "", message: str = "") -> TrainingObservation:
    return TrainingObservation(f"train-{round_name}", round_name, phase, reason, message, "uid-1")


@pytest.mark.parametrize(
    ("phase", "state", "creates"),
    [
        ("Training", "Assigned", True),
        ("Training", "Training", True),  # the operator folded a report in, but our Job is gone: recreate
        ("Training", "Uploaded", False),
        ("Training", "Late", False),
        ("Training", "Failed", False),
        ("Training", "Excluded", False),
        ("Pending", "Assigned", False),
        ("Aggregating", "Assigned", False),
        ("Succeeded", "Assigned", False),
        ("Failed", "Assigned", False),
    ],
)
def test_trains_only_while_the_round_is_training_and_waits_for_this_plant(phase, state, creates):
    actions = decide(view([fr("r1", {"plant-a": state, "plant-b": "Assigned"}, phase=phase)]))
    assert bool(of(actions, CreateTrainingJob)) is creates


def test_other_plants_assignments_start_nothing_here():
    actions = decide(view([fr("r1", {"plant-b": "Assigned"})]))
    assert not of(actions, CreateTrainingJob) and not of(actions, ReportAssignment)


def test_an_existing_job_is_not_created_again_and_its_state_is_reported():
    running = job("r1", TrainingPhase.RUNNING, "Running", "training on node plant-a-gpu-0")
    actions = decide(view([fr("r1", {"plant-a": "Assigned"})], trainings={"r1": running}))
    assert not of(actions, CreateTrainingJob)
    (report,) = of(actions, ReportAssignment)
    assert report.assignment.state is AssignmentState.TRAINING
    assert report.assignment.message == "Running: training on node plant-a-gpu-0"


def test_training_spec_comes_from_round_model_and_participant():
    r = fr(
        "r1",
        {"plant-a": "Assigned"},
        compression="int8",
        privacy={"mode": "local", "clipNorm": 2.0, "noiseMultiplier": 0.5},
        training={
            "epochs": 3,
            "batchSize": 16,
            "learningRate": 0.1,
            "fedProxMu": 0.01,
            "optimizer": "sgd",
            "momentum": 0.5,
        },
        pod={
            "gpus": 1,
            "cpu": "4",
            "memory": "2Gi",
            "nodeSelector": {"gpu": "a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    )
    (create,) = of(
        decide(view([r], participant=pp(variant="light", sub_path="line-3"), now=later(600))), CreateTrainingJob
    )
    s = create.spec
    assert (s.round, s.model, s.task, s.variant) == ("r1", "bearing", "bearing", "light")
    assert (s.epochs, s.batch_size, s.learning_rate, s.optimizer, s.fedprox_mu) == (3, 16, 0.1, "sgd", 0.01)
    assert s.momentum == 0.5 and training_args(s)[training_args(s).index("--sgd-momentum") + 1] == "0.5"
    assert (s.codec, s.clip_norm, s.noise_multiplier) == ("int8", 2.0, 0.5)
    assert (s.gpus, s.cpu, s.memory, dict(s.node_selector)) == (1, "4", "2Gi", {"gpu": "a100"})
    assert s.tolerations == ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
    assert s.data_sub_path == "line-3"
    assert s.active_deadline_seconds == 3000  # what is left of the round's deadline
    assert s.job_name == "train-r1"


@pytest.mark.parametrize(
    ("mode", "clip", "noise", "dp_mode"),
    [
        ("off", 0.0, 0.0, "local"),
        ("central", 2.0, 0.0, "local"),
        ("local", 2.0, 0.5, "local"),
        ("sample", 2.0, 0.5, "sample"),
    ],
)
def test_plants_clip_unless_privacy_is_off_and_add_noise_only_when_the_mode_is_theirs(mode, clip, noise, dp_mode):
    r = fr("r1", {"plant-a": "Assigned"}, privacy={"mode": mode, "clipNorm": 2.0, "noiseMultiplier": 0.5})
    (create,) = of(decide(view([r])), CreateTrainingJob)
    assert (create.spec.clip_norm, create.spec.noise_multiplier, create.spec.dp_mode) == (clip, noise, dp_mode)
    command = train_command(
        create.spec,
        AgentConfig(
            plant="plant-a",
            hub_kubeconfig=Path("k"),
            hub_namespace="n",
            exchange="hub:443",
            token_file=Path("t"),
            namespace="plant",
            cache_dir=Path("c"),
            data_claim="vibration",
        ),
    )
    at = command.index("--dp-mode")
    assert command[at + 1] == dp_mode  # what `plantfed train` in the Job is told to do


@pytest.mark.parametrize(
    ("rounds_kw", "max_gpus", "models", "now", "reason"),
    [
        ({"pod": {"gpus": 2}}, 1, None, NOW, "TooManyGpus"),
        ({}, 1, {}, NOW, "ModelNotFound"),
        ({}, 1, None, later(3601), "DeadlinePassed"),
    ],
)
def test_a_round_this_plant_cannot_run_is_reported_failed_with_the_reason(rounds_kw, max_gpus, models, now, reason):
    actions = decide(view([fr("r1", {"plant-a": "Assigned"}, **rounds_kw)], max_gpus=max_gpus, models=models, now=now))
    assert not of(actions, CreateTrainingJob)
    (report,) = of(actions, ReportAssignment)
    assert report.assignment.state is AssignmentState.FAILED
    assert report.assignment.message.startswith(f"{reason}: ")


@pytest.mark.parametrize(
    ("phase", "reason", "message", "state", "progress"),
    [
        (
            TrainingPhase.WAITING,
            "Unschedulable",
            "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
            AssignmentState.PENDING,
            0.0,
        ),
        (TrainingPhase.RUNNING, "Running", "training on node n", AssignmentState.TRAINING, 0.0),
        (TrainingPhase.SUCCEEDED, "Uploaded", "training Job succeeded; update uploaded", AssignmentState.UPLOADED, 1.0),
        (TrainingPhase.FAILED, "BackoffLimitExceeded", "exit code 1 (Error): boom", AssignmentState.FAILED, 0.0),
    ],
)
def test_job_phase_maps_to_the_assignment_state_the_operator_reads(phase, reason, message, state, progress):
    actions = decide(view([fr("r1", {"plant-a": "Training"})], trainings={"r1": job("r1", phase, reason, message)}))
    (report,) = of(actions, ReportAssignment)
    assert report.assignment.model_dump(include={"round", "state", "progress", "message"}) == {
        "round": "r1",
        "state": state,
        "progress": progress,
        "message": f"{reason}: {message}",
    }


def test_an_unchanged_assignment_is_not_written_again():
    running = job("r1", TrainingPhase.RUNNING, "Running", "training on node n")
    current = {"round": "r1", "state": "Training", "progress": 0.0, "message": "Running: training on node n"}
    actions = decide(
        view([fr("r1", {"plant-a": "Training"})], trainings={"r1": running}, participant=pp(assignment=current))
    )
    assert not of(actions, ReportAssignment)


def test_the_newest_active_round_is_what_status_shows():
    old = fr("r1", {"plant-a": "Uploaded"}, phase="Aggregating", created=NOW)
    new = fr("r2", {"plant-a": "Assigned"}, created=later(60))
    done = job("r1", TrainingPhase.SUCCEEDED, "Uploaded", "ok")
    (report,) = of(decide(view([new, old], trainings={"r1": done})), ReportAssignment)
    assert report.assignment.round == "r2" and report.assignment.state is AssignmentState.PENDING


@pytest.mark.parametrize(
    ("plants", "phase", "policy", "cancel"),
    [
        ({"plant-a": "Training"}, "Training", "Reject", None),
        ({"plant-a": "Uploaded"}, "Aggregating", "Reject", None),  # the Job is finishing its upload
        ({"plant-a": "Late"}, "Aggregating", "Reject", "PlantLate"),
        ({"plant-a": "Late"}, "Aggregating", "Record", None),  # its late update is still recorded
        ({"plant-a": "Training"}, "Failed", "Reject", "RoundFailed"),
        ({"plant-a": "Excluded"}, "Training", "Reject", "PlantExcluded"),
        ({"plant-b": "Assigned"}, "Training", "Reject", "NotAssigned"),
        (None, None, "Reject", "RoundDeleted"),
    ],
)
def test_running_jobs_the_hub_no_longer_wants_are_cancelled(plants, phase, policy, cancel):
    rounds = [] if plants is None else [fr("r1", plants, phase=phase, lateUploadPolicy=policy)]
    running = job("r1", TrainingPhase.RUNNING, "Running", "")
    cancels = of(decide(view(rounds, trainings={"r1": running})), CancelTrainingJob)
    assert [c.reason for c in cancels] == ([cancel] if cancel else [])


def test_finished_jobs_are_left_to_their_ttl():
    done = job("r1", TrainingPhase.SUCCEEDED, "Uploaded", "")
    assert not of(decide(view([], trainings={"r1": done})), CancelTrainingJob)


@pytest.mark.parametrize(
    ("promoted", "cached", "followed", "plants", "refresh"),
    [
        (2, {}, (), {"plant-a": "Uploaded"}, [("bearing", 2)]),
        (2, {"bearing": 1}, (), {"plant-a": "Uploaded"}, [("bearing", 2)]),
        (2, {"bearing": 2}, (), {"plant-a": "Uploaded"}, []),
        (None, {}, (), {"plant-a": "Uploaded"}, []),
        (2, {}, (), {"plant-a": "Excluded"}, []),  # never took part: not this plant's model
        (2, {}, ("bearing",), {"plant-b": "Assigned"}, [("bearing", 2)]),  # --model follows it anyway
    ],
)
def test_cache_follows_the_promoted_version_of_models_this_plant_trains(promoted, cached, followed, plants, refresh):
    rounds = [fr("r1", plants, phase="Succeeded")]
    actions = decide(
        view(rounds, models={"bearing": fm(promoted=promoted)}, cached=cached, followed_models=frozenset(followed))
    )
    assert [(a.model, a.version) for a in of(actions, RefreshModel)] == refresh


def test_a_job_left_by_an_earlier_round_of_the_same_name_is_deleted_before_the_new_one_is_made():
    # A model deleted and re-created names its rounds the same again; the old Job still holds the name.
    r = fr("r1", {"plant-a": "Assigned"}, uid="new-uid")
    old = TrainingObservation("train-r1", "r1", TrainingPhase.SUCCEEDED, "Uploaded", "", "job-uid", "old-uid")
    actions = decide(view([r], trainings={"r1": old}))
    assert [(a.job_name, a.reason) for a in of(actions, CancelTrainingJob)] == [("train-r1", "RoundReplaced")]
    assert not of(actions, CreateTrainingJob) and not of(actions, ReportAssignment)
    (create,) = of(decide(view([r])), CreateTrainingJob)  # once it is gone
    assert create.spec.round_uid == "new-uid"


# --- scoring the round's candidate ------------------------------------------------------------------


def evaluating(state: str = "Uploaded", scored: bool = False, opened: float = 0.0, phase: str = "Evaluating"):
    """A round whose candidate version 2 the operator asked its contributing plants to score."""
    round_ = fr("r1", {"plant-a": state, "plant-b": "Uploaded"}, phase=phase)
    status = round_.status.model_copy(
        update={"evaluation": RoundEvaluation(version=2, start_time=later(opened), expected=2)}
    )
    if scored:
        status.plants = [
            p.model_copy(update={"evaluation": {"val_accuracy": 0.9}}) if p.plant == "plant-a" else p
            for p in status.plants
        ]
    return round_.model_copy(update={"status": status})


@pytest.mark.parametrize(
    ("state", "scored", "phase", "creates"),
    [
        ("Uploaded", False, "Evaluating", True),
        ("Uploaded", True, "Evaluating", False),  # the hub has our numbers
        ("Late", False, "Evaluating", False),  # not aggregated: nothing of ours to judge
        ("Uploaded", False, "Succeeded", False),
    ],
)
def test_a_contributing_plant_scores_the_candidate_once(state, scored, phase, creates):
    actions = decide(view([evaluating(state, scored, phase=phase)], now=later(30)))
    made = of(actions, CreateTrainingJob)
    assert bool(made) is creates
    if creates:
        (spec,) = [a.spec for a in made]
        assert (spec.purpose, spec.job_name, spec.gpus) == ("evaluate", "eval-r1", 0)
        assert spec.active_deadline_seconds == 600 - 30, "the Job lives only as long as the hub's evaluation window"
        assert not of(actions, ReportAssignment), "scoring is not a training assignment"


def test_an_evaluation_job_is_not_made_twice_and_only_a_deleted_rounds_is_cancelled():
    running = {"r1": TrainingObservation("eval-r1", "r1", TrainingPhase.RUNNING, job_uid="uid-2")}
    assert not of(decide(view([evaluating()], evaluations=running, now=later(30))), CreateTrainingJob)
    finished = decide(view([evaluating(phase="Succeeded")], evaluations=running, now=later(30)))
    assert not of(finished, CancelTrainingJob), "its report may be what finished the round; it is exiting"
    actions = decide(view([], evaluations=running, now=later(30)))
    assert of(actions, CancelTrainingJob) == [CancelTrainingJob("eval-r1", "r1", "RoundDeleted")]


def test_no_evaluation_job_after_the_window_closed():
    assert not of(decide(view([evaluating()], now=later(601))), CreateTrainingJob)
