"""What a simulation rehearses, as the objects a cluster would hold: a FederatedModel, its plants, rounds.

`plantfed simulate` flags are one way to write a FederatedModel (with its roundTemplate) and its
PlantParticipants; `-f manifest.yaml` is the other. Both end here as the same objects, which the operator's
reconcilers then run (see `plantfed.sim.hub`). The objects are written to `<out>/campaign.yaml`, so a
rehearsal from flags can be applied to a cluster as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from plantfed.contract.api.base import KubeModel
from plantfed.contract.api.common import LabelSelector, ObjectMeta
from plantfed.contract.api.model import (
    FederatedModel,
    FederatedModelSpec,
    InitialWeights,
)
from plantfed.contract.api.participant import (
    Capacity,
    DataSource,
    HostPathSource,
    ModelVariant,
    PlantParticipant,
    PlantParticipantSpec,
)
from plantfed.contract.api.round import (
    FederatedRound,
    Privacy,
    PrivacyMode,
    RoundTemplate,
)
from plantfed.contract.api.validation import ManifestError, load_manifests
from plantfed.contract.records import DPMode
from plantfed.sim.profile import FleetProfile

SYNTHETIC_DATA = "/var/lib/plantfed/data"
"""The data source a generated PlantParticipant names; simulate itself reads --data (or synthetic data)."""


class CampaignError(ValueError):
    """The flags or manifests do not describe a campaign simulate can run; the message says what to change."""


@dataclass
class Campaign:
    model: FederatedModel
    participants: list[PlantParticipant]
    rounds: list[FederatedRound] = field(default_factory=list)
    """Hand-written FederatedRounds (from -f) besides the campaign's own."""

    @property
    def plant_names(self) -> list[str]:
        return [pp.spec.plant_id for pp in self.participants]

    def documents(self) -> list[KubeModel]:
        return [self.model, *self.rounds, *self.participants]

    def write(self, path: Path) -> Path:
        docs = []
        for obj in self.documents():
            body = obj.to_dict()
            body.pop("status", None)
            body["metadata"] = {k: v for k, v in body["metadata"].items() if k in ("name", "namespace", "labels")}
            docs.append(body)
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return path


def plant_name(index: int) -> str:
    return f"plant-{index + 1}"


def plant_label(plant: str, names: dict[str, str]) -> str:
    """`plant-1 (load0hp)`: a plant's id with the name its data gives it (`Task.plant_name`), when that differs."""
    name = names.get(plant)
    return f"{plant} ({name})" if name and name != plant else plant


def privacy_from_flags(
    *,
    clip_norm: float,
    noise_multiplier: float,
    dp_mode: DPMode,
    central_noise_multiplier: float | None,
    norm_bound: float | None,
    delta: float,
    epsilon_budget: float | None,
) -> Privacy:
    """The FederatedRound `privacy` the DP flags describe; one mode per round, as in the API."""
    if central_noise_multiplier is not None:
        if noise_multiplier > 0 or clip_norm > 0:
            raise CampaignError(
                "--central-noise-multiplier (the hub noises the aggregate) and --clip-norm/--noise-multiplier "
                "(each plant noises its update) are two privacy modes; a FederatedRound has one"
            )
        if not norm_bound:
            raise CampaignError("central DP noise needs --norm-bound: without clipping the sensitivity is unbounded")
        return Privacy(
            mode=PrivacyMode.CENTRAL,
            clip_norm=norm_bound,
            noise_multiplier=central_noise_multiplier,
            delta=delta,
            epsilon_budget=epsilon_budget,
        )
    if noise_multiplier > 0:
        if clip_norm <= 0:
            raise CampaignError("--noise-multiplier needs --clip-norm: noise is calibrated to the clipping bound")
        mode = PrivacyMode.SAMPLE if dp_mode is DPMode.SAMPLE else PrivacyMode.LOCAL
        return Privacy(
            mode=mode,
            clip_norm=clip_norm,
            noise_multiplier=noise_multiplier,
            delta=delta,
            epsilon_budget=epsilon_budget,
        )
    if clip_norm > 0:
        raise CampaignError(
            "--clip-norm without --noise-multiplier is not a privacy mode a FederatedRound has; "
            "to bound every update at the hub without noise use --norm-bound"
        )
    return Privacy(delta=delta)


def participants_for(
    names: Sequence[str], variants: Sequence[str] = (), labels: dict[str, str] | None = None
) -> list[PlantParticipant]:
    """One PlantParticipant per plant; `variants` are assigned in turn (a light plant trains the light model)."""
    out = []
    for i, name in enumerate(names):
        variant = ModelVariant(variants[i % len(variants)]) if variants else ModelVariant.FULL
        out.append(
            PlantParticipant(
                metadata=ObjectMeta(name=name, labels=dict(labels or {})),
                spec=PlantParticipantSpec(
                    plant_id=name,
                    capacity=Capacity(model_variant=variant),
                    data=DataSource(host_path=HostPathSource(path=SYNTHETIC_DATA)),
                ),
            )
        )
    return out


def with_profile(participants: list[PlantParticipant], profile: FleetProfile) -> list[PlantParticipant]:
    """The profile's maintenance windows added to each plant's own, so the operator's selection applies them."""
    profile.check_plants(pp.spec.plant_id for pp in participants)
    out = []
    for pp in participants:
        windows = profile.resolve(pp.spec.plant_id).maintenance_windows
        if windows:
            spec = pp.spec.model_copy(update={"maintenance_windows": [*pp.spec.maintenance_windows, *windows]})
            pp = pp.model_copy(update={"spec": spec})
        out.append(pp)
    return out


def _selector_labels(selector: LabelSelector | None) -> dict[str, str]:
    if selector is None:
        return {}
    if selector.match_expressions:
        raise CampaignError(
            "the round's plantSelector uses matchExpressions; simulate cannot invent plants matching them: "
            "add PlantParticipant documents to the manifest"
        )
    return dict(selector.match_labels)


def from_manifests(paths: Sequence[Path], *, plants: int, task: str, seed: int, rounds: int | None) -> Campaign:
    """The campaign in `paths`: one FederatedModel, or FederatedRounds of one model; PlantParticipants optional.

    Without PlantParticipants, simulate creates the plants a round would select: those it names in `plants`,
    else `plants` plants labelled to match its `plantSelector`. `rounds` overrides the model's maxRounds.
    """
    objects: list[KubeModel] = []
    for path in paths:
        try:
            objects += load_manifests(path)
        except OSError as err:
            raise CampaignError(f"cannot read {path}: {err}") from None
        except ManifestError as err:
            raise CampaignError(str(err)) from None
    models = [o for o in objects if isinstance(o, FederatedModel)]
    hand = [o for o in objects if isinstance(o, FederatedRound)]
    given = [o for o in objects if isinstance(o, PlantParticipant)]
    if len(models) > 1:
        raise CampaignError(f"the manifests hold {len(models)} FederatedModels; simulate rehearses one campaign")
    if not models and not hand:
        raise CampaignError("the manifests hold no FederatedModel or FederatedRound to run")
    refs = {fr.spec.model_ref for fr in hand}
    if models:
        model = models[0]
        if refs - {model.name}:
            raise CampaignError(f"FederatedRounds reference {sorted(refs - {model.name})}, not {model.name}")
    else:
        if len(refs) > 1:
            raise CampaignError(f"the FederatedRounds train {len(refs)} different models; simulate runs one")
        template = RoundTemplate.model_validate(hand[0].spec.model_dump(exclude={"model_ref", "base_version"}))
        model = FederatedModel(
            metadata=ObjectMeta(name=refs.pop()),
            spec=FederatedModelSpec(
                task=task, initial_weights=InitialWeights(seed=seed), round_template=template, suspend=True
            ),
        )
    if rounds is not None:
        stop = model.spec.stop.model_copy(update={"max_rounds": rounds})
        model = model.model_copy(update={"spec": model.spec.model_copy(update={"stop": stop})})
    if models and model.spec.stop.max_rounds is None and not model.spec.suspend:
        raise CampaignError(
            f"FederatedModel {model.name} has no stop.maxRounds, so its campaign may never end: "
            "pass --rounds N to bound the rehearsal"
        )
    if not given:
        spec = hand[0].spec if not models else model.spec.round_template
        if spec.plants:
            given = participants_for(spec.plants, labels=_selector_labels(spec.plant_selector))
        else:
            given = participants_for(
                [plant_name(i) for i in range(plants)], labels=_selector_labels(spec.plant_selector)
            )
    return Campaign(model=model, participants=given, rounds=hand)
