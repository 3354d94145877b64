"""`plantfed store fsck`: every way a model store's files are damaged or contradict each other, by name.

Read-only. It checks what the exchange and aggregation rely on without re-checking it at every read: that each
blob's bytes hash to its name, that every record parses and is filed where it says it belongs, that versions
point at blobs that exist (with their size) and at parents that exist, that the promoted pointer names a version,
and that a round's update records agree with what the round committed (`ModelStore.checked_updates`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from plantfed.contract.naming import InvalidNameError, check_name, is_sha256
from plantfed.contract.records import EvaluationRecord, ModelVersion
from plantfed.engine.store import ModelStore, StoreError, read_record
from plantfed.formats.atomic import file_sha256

_T = TypeVar("_T")


@dataclass(frozen=True)
class Finding:
    """One problem: the file (relative to the store) and what is wrong with it."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass(frozen=True)
class FsckReport:
    findings: list[Finding]
    blobs: int
    versions: int
    rounds: int


def fsck(store: ModelStore) -> FsckReport:
    """Check the whole store; an empty `findings` means nothing is damaged."""
    findings: list[Finding] = []
    blobs = _check_blobs(store, findings)
    versions = _check_models(store, findings)
    rounds = _check_rounds(store, findings)
    for path in sorted((store.root / "privacy").glob("*.json")) if (store.root / "privacy").is_dir() else ():
        _guard(store, findings, path, store.read_ledger, path.stem)
    return FsckReport(findings, blobs, versions, rounds)


def _rel(store: ModelStore, path: Path) -> str:
    return str(path.relative_to(store.root)) if path.is_relative_to(store.root) else str(path)


def _guard(store: ModelStore, findings: list[Finding], path: Path, check: Callable[..., _T], *args: Any) -> _T | None:
    """`check(*args)`; a store error becomes a finding on `path` instead of ending the scan."""
    try:
        return check(*args)
    except (StoreError, InvalidNameError) as exc:
        findings.append(Finding(_rel(store, path), str(exc)))
        return None


def _check_blobs(store: ModelStore, findings: list[Finding]) -> int:
    count = 0
    for path in sorted(p for p in (store.root / "blobs" / "sha256").rglob("*") if p.is_file()):
        count += 1
        name = path.name
        if not is_sha256(name) or path.parent.name != name[:2]:
            findings.append(
                Finding(_rel(store, path), "not a blob: its name is not its sha256 under blobs/sha256/<ab>/")
            )
            continue
        found = file_sha256(path).hexdigest()
        if found != name:
            findings.append(Finding(_rel(store, path), f"corrupt blob: its bytes hash to {found}"))
    return count


def _check_models(store: ModelStore, findings: list[Finding]) -> int:
    count = 0
    for model in store.models():
        mdir = store.root / "models" / model
        if _guard(store, findings, mdir, check_name, "model", model) is None:
            continue
        numbers = set()
        records: list[tuple[Path, ModelVersion]] = []
        for path in sorted((mdir / "versions").glob("*.json")) if (mdir / "versions").is_dir() else ():
            count += 1
            version = _guard(store, findings, path, read_record, path, ModelVersion)
            if not isinstance(version, ModelVersion):
                continue
            if (version.model, str(version.version)) != (model, path.stem):
                findings.append(
                    Finding(
                        _rel(store, path),
                        f"filed as {model} version {path.stem} but is {version.model} version {version.version}",
                    )
                )
            numbers.add(version.version)
            records.append((path, version))
        pruned = _guard(store, findings, mdir / "pruned.json", store.pruned_versions, model) or set()
        for path, version in records:
            what = f"model {model!r} version {version.version}"
            blob = store.blob_path(version.digest)
            # A pruned version's blob is gone (or about to go, after a crash): its record is all that must remain.
            kept = version.version not in pruned
            if kept and not blob.is_file():
                findings.append(Finding(_rel(store, path), f"{what} points at blob {version.digest}, which is missing"))
            elif kept and blob.stat().st_size != version.size:
                findings.append(
                    Finding(_rel(store, path), f"{what} says {version.size} bytes; blob holds {blob.stat().st_size}")
                )
            if version.parent is not None and version.parent not in numbers:
                findings.append(Finding(_rel(store, path), f"{what}: parent version {version.parent} does not exist"))
        promoted = mdir / "promoted.json"
        number = _guard(store, findings, promoted, store.promoted_number, model)
        if isinstance(number, int) and number not in numbers:
            findings.append(
                Finding(_rel(store, promoted), f"model {model!r}: promotes version {number}, which does not exist")
            )
    return count


def _check_rounds(store: ModelStore, findings: list[Finding]) -> int:
    count = 0
    for rdir in sorted(p for p in (store.root / "rounds").iterdir() if p.is_dir()):
        count += 1
        round_file = rdir / "round.json"
        if _guard(store, findings, rdir, check_name, "round", rdir.name) is None:
            continue
        record = _guard(store, findings, round_file, store.get_round, rdir.name)
        if record is None:
            continue
        if record.round_id != rdir.name:
            findings.append(
                Finding(_rel(store, round_file), f"filed as round {rdir.name!r} but is round {record.round_id!r}")
            )
        checked = _guard(store, findings, round_file, store.checked_updates, rdir.name)
        if checked is None:
            continue
        updates, problems = checked
        findings.extend(Finding(_rel(store, rdir / "updates"), f"round {rdir.name!r}: {p}") for p in problems)
        pruned_round = store.round_pruned(rdir.name)
        for update in updates:
            path = rdir / "updates" / f"{update.meta.plant}.json"
            blob = store.blob_path(update.digest)
            if pruned_round:
                continue  # the retention dropped this finished round's update blobs
            if not blob.is_file():
                findings.append(
                    Finding(
                        _rel(store, path),
                        f"round {rdir.name!r}: plant {update.meta.plant!r}'s "
                        f"update points at blob {update.digest}, which is missing",
                    )
                )
            elif blob.stat().st_size != update.meta.total_bytes:
                findings.append(
                    Finding(
                        _rel(store, path),
                        f"round {rdir.name!r}: plant {update.meta.plant!r}'s "
                        f"update declares {update.meta.total_bytes} bytes; blob holds "
                        f"{blob.stat().st_size}",
                    )
                )
        edir = rdir / "evaluations"
        for path in sorted(edir.glob("*.json")) if edir.is_dir() else ():
            _guard(store, findings, path, read_record, path, EvaluationRecord)
    return count
