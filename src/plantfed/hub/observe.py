"""Gather what the pure reconcile functions decide from: the exchange's view and the API server's.

Only committed (checksum-verified) updates appear in `list_updates`, and a model version carries
the id of the round that produced it, so the store alone says which work is already done.
"""

from __future__ import annotations

from typing import Any

import grpc

from plantfed.contract.api.participant import PlantParticipant
from plantfed.contract.api.round import FederatedRound, PrivacyMode
from plantfed.contract.records import ModelVersion
from plantfed.exchange import AdminClient, ExchangeError
from plantfed.hub.kube import Kube
from plantfed.hub.reconcile.round import JobObservation, JobState, ObservedRound, Upload, aggregation_job_name

PARTICIPANTS = "plantparticipants"
ROUNDS = "federatedrounds"
MODELS = "federatedmodels"


def _not_found(err: ExchangeError) -> bool:
    return err.code is grpc.StatusCode.NOT_FOUND


def promoted_version(admin: AdminClient, model: str) -> ModelVersion | None:
    """The lineage's promoted version; None when the store has none yet."""
    try:
        return admin.get_model(model)
    except ExchangeError as err:
        if _not_found(err):
            return None
        raise


def participants(kube: Kube, namespace: str) -> list[PlantParticipant]:
    return [PlantParticipant.from_object(item) for item in kube.list(PARTICIPANTS, namespace)]


def observe_round(kube: Kube, admin: AdminClient, fr: FederatedRound) -> ObservedRound:
    """The round as the operator sees it: its aggregation Job from the API server, the rest from the exchange."""
    job_body = kube.read_job(fr.metadata.namespace or "", fr.status.aggregation_job or aggregation_job_name(fr.name))
    return observe_exchange(admin, fr, JobObservation.from_job(job_body) if job_body is not None else None)


def observe_exchange(admin: AdminClient, fr: FederatedRound, job: JobObservation | None) -> ObservedRound:
    """Everything but the Job, read through the exchange's admin API (the operator's and `plantfed simulate`'s).

    The Job is observed first: a Job seen finished therefore implies its candidate (and the ledger charge
    made before publishing it) is in what is read here.
    """
    name, model = fr.metadata.name, fr.spec.model_ref
    try:
        listed = admin.list_updates(name)
        exchange, uploads = listed.round, tuple(Upload.from_record(u) for u in listed.updates)
    except ExchangeError as err:
        if not _not_found(err):
            raise
        exchange, uploads = None, ()
    candidate = None
    try:
        candidate = next((v for v in admin.list_versions(model) if v.round_id == name), None)
    except ExchangeError as err:
        if not _not_found(err):
            raise
    promoted = promoted_version(admin, model)
    evaluations = tuple(admin.list_evaluations(name)) if candidate is not None and exchange is not None else ()
    # After the candidate: the Job charges the ledger before it publishes, so a candidate seen above means
    # this round's releases are in what is read here.
    privacy = {}
    if fr.spec.privacy.mode is not PrivacyMode.OFF:
        privacy = {plant: tuple(e.release for e in entries) for plant, entries in admin.privacy_ledger(model).items()}
    return ObservedRound(
        uploads=uploads,
        exchange=exchange,
        job=job,
        candidate=candidate,
        promoted=promoted,
        evaluations=evaluations,
        privacy=privacy,
    )


def job_failure(job: dict[str, Any] | None) -> str | None:
    """Why a Job failed, from its Failed condition; None while it has not failed."""
    if job is None:
        return None
    observed = JobObservation.from_job(job)
    return (observed.message or "failed") if observed.state is JobState.FAILED else None
