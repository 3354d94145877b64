"""What the model store may forget: the retention rule as a pure function of what the store holds.

At the seed's scale (17 plants × 500 MB updates, a round a week) a store that keeps everything grows by about
9 GB a week, almost all of it update blobs nobody reads again once their round is decided. The rule:

* **Versions.** A version's blob is kept while it is promoted, pinned, among the model's last `keep_versions`
  versions, or the base or candidate of a round that is not finished (below). Every other version's blob, and the
  server optimiser's state it led to, is dropped. Its lineage record stays, so every kept version's ancestry
  (parents, rounds, metrics, aggregation summary) stays readable forever: "ancestors" are kept as records, not
  as blobs, since in a campaign every earlier version is an ancestor of the newest and keeping their blobs would
  make the store grow without bound.
* **Updates.** A round is *finished* once it is closed and decided: its candidate was promoted (released), or a
  newer round of the same model was opened after it closed (the operator opens the next round only once it has
  decided the last one, failed rounds included). A finished round's update blobs are dropped; its records
  (update metadata, plant evaluations) stay. The last round of a campaign that ended without promoting keeps its
  updates until the next round opens: at most one round's worth.
* **Never dropped:** records of any kind, the privacy ledger, partial uploads (closing a round frees those),
  and a blob that anything kept still references (blobs are content-addressed and may be shared).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

#: Versions a model keeps blobs for by default besides the promoted, pinned and in-use ones.
DEFAULT_KEEP_VERSIONS = 10


class RetentionPolicy(BaseModel):
    """How much history the hub's store keeps (see the module docstring for the rule)."""

    #: The newest versions of each model whose blobs are kept whatever else holds (>= 1: the newest always is).
    keep_versions: int = Field(DEFAULT_KEEP_VERSIONS, ge=1)
    #: Whether finished rounds' update blobs are dropped.
    prune_updates: bool = True


@dataclass(frozen=True)
class VersionView:
    number: int
    digest: str
    round_id: str | None


@dataclass(frozen=True)
class RoundView:
    round_id: str
    model: str
    base_version: int
    closed: bool
    opened_at: float
    closed_at: float | None
    #: Digests of the round's committed updates.
    digests: frozenset[str]


@dataclass(frozen=True)
class StoreView:
    """What the rule reads: per model its versions and promoted/released/pinned numbers, and every round."""

    versions: Mapping[str, list[VersionView]]
    promoted: Mapping[str, int | None]
    released: Mapping[str, set[int]]
    rounds: list[RoundView]
    pinned: Mapping[str, set[int]] = field(default_factory=dict)
    #: What an earlier run already dropped: model -> version numbers, and round ids.
    pruned_versions: Mapping[str, set[int]] = field(default_factory=dict)
    pruned_rounds: frozenset[str] = frozenset()


@dataclass
class RetentionPlan:
    """What to drop now: version numbers per model and rounds whose update blobs go (not pruned before), and
    every blob nothing kept references (those an earlier run deleted included: deleting is idempotent)."""

    versions: dict[str, set[int]]
    rounds: set[str]
    digests: set[str]

    @property
    def settled(self) -> bool:
        """Nothing newly pruned: only blobs an earlier run dropped (or is dropping) remain to be deleted."""
        return not (any(self.versions.values()) or self.rounds)


def finished_rounds(view: StoreView) -> set[str]:
    """Rounds that are closed and decided (promoted, or a newer round of the model opened after they closed)."""
    done = set()
    for r in view.rounds:
        if not r.closed:
            continue
        released = view.released.get(r.model, set())
        promoted = any(v.round_id == r.round_id and v.number in released for v in view.versions.get(r.model, []))
        closed_at = r.closed_at if r.closed_at is not None else r.opened_at
        superseded = any(o.model == r.model and o.opened_at > closed_at for o in view.rounds if o is not r)
        if promoted or superseded:
            done.add(r.round_id)
    return done


def plan(view: StoreView, policy: RetentionPolicy) -> RetentionPlan:
    """What `policy` drops from a store that holds `view` (idempotent: a plan after applying it is `settled`)."""
    finished = finished_rounds(view)
    live_rounds = [r for r in view.rounds if r.round_id not in finished]
    keep: dict[str, set[int]] = {}
    drop: dict[str, set[int]] = {}
    for model, versions in view.versions.items():
        numbers = sorted(v.number for v in versions)
        kept = set(numbers[-policy.keep_versions :])
        kept |= view.pinned.get(model, set())
        promoted = view.promoted.get(model)
        if promoted is not None:
            kept.add(promoted)
        for r in live_rounds:
            if r.model == model:
                kept.add(r.base_version)
                kept |= {v.number for v in versions if v.round_id == r.round_id}
        keep[model] = kept
        drop[model] = set(numbers) - kept - view.pruned_versions.get(model, set())
    drop_rounds = (finished - set(view.pruned_rounds)) if policy.prune_updates else set()

    referenced = _digests(
        (v.digest for m, vs in view.versions.items() for v in vs if v.number in keep[m]),
        (d for r in view.rounds if r.round_id not in drop_rounds | set(view.pruned_rounds) for d in r.digests),
    )
    # Everything pruned, now or by an earlier run a crash may have stopped before its blobs were gone.
    gone = {m: drop[m] | view.pruned_versions.get(m, set()) for m in view.versions}
    candidates = _digests(
        (v.digest for m, vs in view.versions.items() for v in vs if v.number in gone[m]),
        (d for r in view.rounds if r.round_id in drop_rounds | set(view.pruned_rounds) for d in r.digests),
    )
    return RetentionPlan(
        versions={m: n for m, n in drop.items() if n}, rounds=drop_rounds, digests=candidates - referenced
    )


def _digests(*groups: Iterable[str]) -> set[str]:
    return {d for group in groups for d in group}
