"""The hub's model store: one directory (a PVC in Kubernetes) holding blobs, model lineage, rounds and updates.

Everything is a file, written atomically (temp file in the same directory, fsync, rename, fsync directory),
so the store survives a restart and holds no truth in memory. Several processes may share one store (the
exchange server and an aggregation Job): every read-modify-write runs under an `fcntl.flock` on a lock file
plus an in-process lock (flock alone does not order threads sharing a lock on NFS-emulated POSIX locks).

The store owns its whole directory: the privacy ledger and the server optimiser's state are sections of it,
reached only through this class (paths, locks and the one atomic writer live here), so a second writer can
never pick its own file name, lock or write discipline.

Layout::

    blobs/sha256/ab/abcdef...            content-addressed payloads (read-only once written)
    tmp/                                 blob staging and scratch space (same filesystem: renames are atomic);
                                         what killed processes leave here is swept (`sweep_leftovers`)
    locks/                               one lock file per model, round, (round, plant) upload and ledger
    models/<model>/versions/<n>.json     records.ModelVersion, n = 1, 2, 3 ... allocated under the model lock
    models/<model>/promoted.json         {"version": n, "released": [...]}: the promoted pointer, and every
                                         version ever promoted (what any plant may download; a pointer written
                                         before "released" existed counts as releasing its version only)
    rounds/<round>/round.json            records.RoundRecord
    rounds/<round>/updates/<plant>.json  records.UpdateRecord: committed, verified updates only
    rounds/<round>/partial/<plant>.data  a resumable upload in progress (+ <plant>.json: what it declared)
    rounds/<round>/evaluations/<plant>.json
                                         records.EvaluationRecord: a plant's evaluation of the round's candidate
    models/<model>/pruned.json           {"versions": [...]}: versions whose blob the retention dropped (their
                                         records stay); written before any blob goes
    rounds/<round>/pruned.json           {"updates": true}: the retention dropped this round's update blobs
    privacy/<model>.json                 records.PrivacyLedgerRecord: every plant's charged DP releases
    server-state/<model>/after-v<n>/     the server optimiser's state (FedAdam/FedYogi moments, FedAvgM
                                         momentum) after the round that produced version n; immutable once kept

A partial upload only becomes an update through `PartialUpload.finalize` (size + sha256 verified) followed
by `commit_update` (round still open, plant assigned, base version matches), so aggregation, which reads
`updates()`, never sees a partial, rejected or late update. Server-optimiser state is keyed by the version
it led to, so a retried aggregation starts again from its base version's state and never steps twice.

Retention (`apply_retention`, the rule in `plantfed.engine.retention`) drops blobs the store no longer needs. It
writes its pruned markers first and deletes blobs after, each blob only after checking under the blobs lock
that no record references it (commits and publishes take that lock around checking their blob and writing
their record), so a crash at any point leaves a store where nothing referenced is gone and a rerun finishes
the job.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from pydantic import BaseModel, ValidationError

from plantfed.contract.naming import InvalidNameError, check_name, check_sha256, is_name
from plantfed.contract.plant_metrics import (
    ACCURACY,
    BASE_VAL_SAMPLES,
    LOSS,
    SAMPLES,
    VAL,
    VAL_ACCURACY,
    VAL_LOSS,
    VAL_SAMPLES,
    base_scores,
)
from plantfed.contract.records import (
    AggregationSummary,
    EvaluationRecord,
    ModelVersion,
    PrivacyLedgerRecord,
    RoundRecord,
    RoundState,
    UpdateMeta,
    UpdateRecord,
)
from plantfed.contract.scores import is_count_statistic
from plantfed.engine.retention import RetentionPolicy, RoundView, StoreView, VersionView, plan
from plantfed.formats.atomic import READ_SIZE, file_blocks, file_sha256, fsync_dir, write_atomic

#: A partial upload is flushed to disk (fdatasync) at most this often while it receives, so a power cut costs at
#: most that much transfer time; the sha256 check at commit catches anything torn. By time, not bytes: a slow WAN
#: upload is still synced every few seconds, a fast LAN one does not stall on an fsync every few megabytes.
_SYNC_SECONDS = 5.0

#: A temporary file or directory left in the store (by a killed aggregation, upload or write) is removed by
#: `sweep_leftovers` only when nobody holds its lock and it is at least this old: nothing that is still being
#: written is ever removed, even on a filesystem whose locks are only advisory between hosts.
LEFTOVER_GRACE_SECONDS = 3600.0

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
"""The errnos of a full filesystem (or quota)."""

_Record = TypeVar("_Record", bound=BaseModel)
#: Checks a received payload file before it enters the blob store; raises ValueError to reject it.
Validator = Callable[[Path], None]
#: Shown a partial upload's bytes as they are written (`PartialUpload.begin`).
Observer = Callable[[bytes | memoryview], None]


class StoreError(Exception):
    """Base of every error the store raises; the exchange maps each subclass to one gRPC status."""


class NotFoundError(StoreError):
    """Unknown round, model, version or blob."""


class ConflictError(StoreError):
    """Something with that identity already exists with different content."""


class RoundClosedError(StoreError):
    """The round no longer accepts updates."""


class BaseMismatchError(StoreError):
    """An update trained on a base version other than the round's."""


class NotAssignedError(StoreError):
    """The plant is not one of the round's plants."""


class ChecksumError(StoreError):
    """Received bytes do not match the declared size or sha256."""


class OffsetError(StoreError):
    """A resume offset beyond what is held, or bytes beyond the declared size."""


class NotCandidateError(StoreError):
    """An evaluation names a version that is not the round's candidate."""


class InvalidValueError(StoreError, ValueError):
    """A record carries a value no consumer could use (e.g. a NaN metric)."""


class BusyError(StoreError):
    """Another stream is writing the same (round, plant) upload right now."""


class LedgerError(StoreError):
    """The privacy ledger refuses an inconsistent record or cannot be read."""


class PrunedError(NotFoundError):
    """What was asked for existed, but the store's retention dropped its blob (its record is still there)."""


class CorruptStoreError(StoreError):
    """What the store holds is damaged (a record that does not parse, a blob whose bytes do not match its digest,
    records that contradict each other): named by model, round, plant and file, never served as if it were fine.
    `plantfed store fsck` lists every such finding."""


def _write_record(path: Path, record: BaseModel) -> None:
    """Write `record`, but only if it reads back: a value JSON cannot carry (NaN) is refused, never stored."""
    data = record.model_dump_json(indent=2).encode()
    try:
        type(record).model_validate_json(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise InvalidValueError(f"refusing to store a record that could not be read back ({fields}): {exc}") from exc
    write_atomic(path, data)


def read_record(path: Path, cls: type[_Record]) -> _Record | None:
    """The record at `path` (None if there is none); CorruptStoreError naming the file if it does not parse."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return cls.model_validate_json(data)
    except ValidationError as exc:
        raise CorruptStoreError(f"corrupt store record {path}: {exc}") from exc


def evaluation_problems(evaluation: EvaluationRecord, declared: UpdateMeta) -> list[str]:
    """Why a plant's evaluation cannot be weighed against the others (empty: it can), from what it declared.

    The plant scored the round's base on its validation split before training (`global_val_*` in its update),
    and scores the candidate on that same split: so the sample count is bounded by that split's declared size
    (by its training set when it declared none) and the keys by the scores it declared there (by the known
    `val_accuracy`/`val_loss` when none). A score that is a fraction (`*accuracy`) lies in [0, 1]; a loss, a
    count, a sum of squares or a confusion count (`plantfed.contract.scores`) is never negative; the record
    model already refused non-finite numbers.
    """
    problems = []
    declared_split = declared.metrics.get(BASE_VAL_SAMPLES)
    limit = int(declared_split) if declared_split is not None else declared.num_samples
    what = "validation samples it declared" if declared_split is not None else "training samples it declared"
    if evaluation.num_samples > limit:
        problems.append(f"num_samples {evaluation.num_samples} exceeds the {limit} {what} for this round")
    base = base_scores(declared.metrics, VAL)
    base.pop(VAL_SAMPLES, None)
    allowed = set(base) or {VAL_ACCURACY, VAL_LOSS}
    unknown = sorted(set(evaluation.metrics) - allowed)
    if unknown:
        problems.append(
            f"metrics not declared for this split: {', '.join(unknown[:8])}"
            + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
            + f" (allowed: {', '.join(sorted(allowed))})"
        )
    for key, value in sorted(evaluation.metrics.items()):
        if key.endswith(ACCURACY) and not 0.0 <= value <= 1.0:
            problems.append(f"{key} = {value} is outside [0, 1]")
        elif (key.endswith((LOSS, SAMPLES)) or is_count_statistic(key)) and value < 0:
            problems.append(f"{key} = {value} is negative")
    return problems


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def _locked(lock_path: Path, *, busy: str | None = None) -> Iterator[None]:
    """Exclusive across threads and processes. With `busy`, never waits: raises BusyError(busy) if held."""
    key = str(lock_path)
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault(key, threading.Lock())
    if not tlock.acquire(blocking=busy is None):
        raise BusyError(busy)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if busy is None else fcntl.LOCK_NB))
            except BlockingIOError as exc:
                raise BusyError(busy) from exc
            yield
        finally:
            os.close(fd)
    finally:
        tlock.release()


def _hold(path: Path) -> int:
    """Open `path` (a file or a directory) and hold a shared flock on it: "in use" to `sweep_leftovers`."""
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _unused(path: Path) -> bool:
    """Whether no process holds `path`'s flock (`_hold`); a path that is gone meanwhile counts as in use."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RetentionRun:
    """What one `apply_retention` dropped."""

    versions: dict[str, list[int]]
    rounds: list[str]
    blobs: int
    bytes_freed: int


class _PartialState(BaseModel):
    """What a partial upload declared, plus the accounting that survives a server restart."""

    sha256: str
    total_bytes: int
    started_at: float
    received_before: int = 0
    size_at_begin: int = 0


class PartialUpload:
    """A durable, resumable upload for one (round, plant); holds that pair's lock while open.

    Its committed offset is the data file's length: bytes are appended in order and the final sha256 check
    rejects anything torn, so the length alone is a safe resume point even after a SIGKILL.
    """

    def __init__(self, store: ModelStore, round_id: str, plant: str) -> None:
        self._store = store
        self._dir = store.root / "rounds" / round_id / "partial"
        self._data = self._dir / f"{plant}.data"
        self._state_path = self._dir / f"{plant}.json"
        self._state: _PartialState | None = None
        self._hasher: hashlib._Hash | None = None
        self._observe: Observer | None = None
        self._file: BinaryIO | None = None
        self._offset = 0
        self._synced_at = 0.0

    @property
    def offset(self) -> int:
        return self._offset

    def begin(self, sha256: str, total_bytes: int, offset: int, observe: Observer | None = None) -> None:
        """Start or resume the payload `sha256`; partial bytes of another payload are discarded.

        `observe` sees every byte of the payload once, in order: on resume the `offset` bytes held (read back as
        they are hashed), then each appended chunk.
        """
        check_sha256(sha256)
        state = read_record(self._state_path, _PartialState)
        held = self._data.stat().st_size if self._data.exists() else 0
        if state is None or state.sha256 != sha256 or state.total_bytes != total_bytes:
            state = _PartialState(sha256=sha256, total_bytes=total_bytes, started_at=time.time())
            held = 0
        if offset < 0 or offset > held:
            raise OffsetError(f"resume offset {offset} is beyond the {held} bytes held for this payload")
        if offset > total_bytes:
            raise OffsetError(f"resume offset {offset} is beyond the declared size {total_bytes}")
        state.received_before += held - state.size_at_begin
        state.size_at_begin = offset
        self._dir.mkdir(parents=True, exist_ok=True)
        # Truncate before recording the payload, so a crash in between never pairs old bytes with a new sha256.
        self._file = open(self._data, "r+b" if self._data.exists() else "w+b")
        self._file.truncate(offset)
        os.fsync(self._file.fileno())
        self._file.seek(offset)
        _write_record(self._state_path, state)
        self._hasher = hashlib.sha256()
        for block in file_blocks(self._data, offset) if offset else ():
            self._hasher.update(block)
            if observe is not None:
                observe(block)
        self._observe = observe
        self._state = state
        self._offset = offset
        self._synced_at = time.monotonic()

    def append(self, data: bytes | memoryview) -> None:
        if self._state is None or self._file is None or self._hasher is None:
            raise StoreError("append before begin")
        if self._offset + len(data) > self._state.total_bytes:
            message = f"received {self._offset + len(data)} bytes, more than the declared {self._state.total_bytes}"
            self.discard()
            raise OffsetError(message)
        self._file.write(data)
        self._hasher.update(data)
        if self._observe is not None:
            self._observe(data)
        self._offset += len(data)
        if time.monotonic() - self._synced_at >= _SYNC_SECONDS:
            self._file.flush()
            os.fdatasync(self._file.fileno())
            self._synced_at = time.monotonic()

    def finalize(self, validate: Validator | None = None) -> tuple[str, int, int, float]:
        """Verify size, sha256 and `validate`, then move the bytes into the blob store.

        Returns (digest, size, bytes received over all attempts, seconds since the first attempt began).
        A mismatch or a rejected payload discards the partial (its bytes cannot be trusted) and raises.
        """
        if self._state is None or self._file is None or self._hasher is None:
            raise StoreError("finalize before begin")
        state = self._state
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if self._offset != state.total_bytes:
            raise OffsetError(
                f"upload incomplete: {self._offset} of {state.total_bytes} declared bytes held; "
                f"resume from offset {self._offset}"
            )
        digest = self._hasher.hexdigest()
        if digest != state.sha256:
            self.discard()
            raise ChecksumError(f"sha256 mismatch: declared {state.sha256}, received bytes hash to {digest}")
        if validate is not None:
            try:
                validate(self._data)
            except ValueError:
                self.discard()
                raise
        self._store._adopt_blob(self._data, digest)
        received = state.received_before + self._offset - state.size_at_begin
        seconds = time.time() - state.started_at
        self._state_path.unlink(missing_ok=True)
        return digest, self._offset, received, seconds

    def discard(self) -> None:
        self.close()
        self._data.unlink(missing_ok=True)
        self._state_path.unlink(missing_ok=True)
        self._state = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class BlobWriter:
    """A blob being received (`ModelStore.blob_writer`): staged in tmp/, hashed while written, adopted on commit."""

    def __init__(self, store: ModelStore, *, expect_sha256: str | None, expect_size: int | None) -> None:
        self._store = store
        self._expect_sha256 = expect_sha256
        self._expect_size = expect_size
        fd, tmp = tempfile.mkstemp(dir=store.root / "tmp", prefix="blob-")
        self._path = Path(tmp)
        fcntl.flock(fd, fcntl.LOCK_SH)  # in use: `sweep_leftovers` leaves it alone
        self._file = os.fdopen(fd, "wb")
        self._hasher = hashlib.sha256()
        self.size = 0

    def append(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if self._expect_size is not None and self.size > self._expect_size:
            raise OffsetError(f"received {self.size} bytes, more than the declared {self._expect_size}")
        self._file.write(chunk)
        self._hasher.update(chunk)

    def commit(self, validate: Validator | None = None) -> tuple[str, int]:
        """Check size, sha256 and `validate`, then make the blob visible; returns (sha256 hex, size)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = self._hasher.hexdigest()
        if self._expect_size is not None and self.size != self._expect_size:
            raise ChecksumError(f"size mismatch: declared {self._expect_size} bytes, received {self.size}")
        if self._expect_sha256 is not None and digest != self._expect_sha256:
            raise ChecksumError(f"sha256 mismatch: declared {self._expect_sha256}, received bytes hash to {digest}")
        if validate is not None:
            validate(self._path)
        self._store._adopt_blob(self._path, digest)
        return digest, self.size

    def discard(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


class ModelStore:
    """See the module docstring for the layout and the guarantees."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        for sub in ("blobs/sha256", "tmp", "models", "rounds", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # --- blobs -------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        check_sha256(digest)
        return self.root / "blobs" / "sha256" / digest[:2] / digest

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def write_blob(
        self,
        chunks: Iterable[bytes],
        *,
        expect_sha256: str | None = None,
        expect_size: int | None = None,
        validate: Validator | None = None,
    ) -> tuple[str, int]:
        """Store a payload streamed as chunks; returns (sha256 hex, size).

        Declared size/sha256 and `validate` are checked before the blob becomes visible.
        """
        with self.blob_writer(expect_sha256=expect_sha256, expect_size=expect_size) as writer:
            for chunk in chunks:
                writer.append(chunk)
            return writer.commit(validate)

    @contextlib.contextmanager
    def blob_writer(self, *, expect_sha256: str | None = None, expect_size: int | None = None) -> Iterator[BlobWriter]:
        """A blob written chunk by chunk (`append`, then `commit`); nothing is left behind unless committed."""
        writer = BlobWriter(self, expect_sha256=expect_sha256, expect_size=expect_size)
        try:
            yield writer
        finally:
            writer.discard()

    def verify_blob(self, digest: str, what: str, size: int | None = None) -> Path:
        """The blob's path, after checking its bytes still hash to `digest` (and it has `size` bytes).

        For a blob about to be aggregated: a flipped bit on disk is reported, naming `what` the blob is, instead
        of being averaged into a model.
        """
        path = self.blob_path(digest)
        try:
            held = path.stat().st_size
        except FileNotFoundError:
            raise CorruptStoreError(f"{what}: blob {digest} is missing from the store ({path})") from None
        if size is not None and held != size:
            raise CorruptStoreError(f"{what}: blob {path} holds {held} bytes, its record says {size}")
        found = file_sha256(path).hexdigest()
        if found != digest:
            raise CorruptStoreError(f"{what}: blob {path} is corrupt: its bytes hash to {found}")
        return path

    def import_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Copy a local file into the blob store (the source is left untouched)."""

        def read() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while block := f.read(READ_SIZE):
                    yield block

        return self.write_blob(read())

    def _adopt_blob(self, src: Path, digest: str) -> None:
        """Move a verified, fsynced file into place under its digest (a no-op if that blob exists)."""
        dest = self.blob_path(digest)
        if dest.exists():
            src.unlink(missing_ok=True)
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(src, 0o444)
        os.replace(src, dest)
        fsync_dir(dest.parent)

    def sweep_leftovers(self, grace_seconds: float = LEFTOVER_GRACE_SECONDS, now: float | None = None) -> list[Path]:
        """Remove what killed processes left behind; returns what was removed.

        That is: closed rounds' partial uploads nobody is sending (they can never commit), entries of tmp/ (a
        blob being received, an aggregation's scratch directory) and the temporary files of atomic record writes
        (`.<name>.*.tmp`), these only if unused (no process holds its flock) and
        not modified for `grace_seconds`. Run by the exchange at start-up and by every aggregation Job.
        """
        now = time.time() if now is None else now
        candidates = list((self.root / "tmp").iterdir())
        for section in ("models", "rounds", "privacy", "server-state"):
            if (self.root / section).is_dir():
                candidates += (p for p in (self.root / section).rglob(".*.tmp") if p.is_file())
        removed = []
        for pdir in sorted((self.root / "rounds").glob("*/partial")):
            try:
                closed = self.get_round(pdir.parent.name).state is RoundState.CLOSED
            except (StoreError, InvalidNameError):
                continue  # damage is fsck's to report; a sweep never stops the exchange from starting
            if closed:
                before = set(pdir.glob("*.data"))
                self._drop_idle_partials(pdir.parent.name)
                removed += sorted(p for p in before if not p.exists())
        for path in sorted(candidates):
            try:
                old = now - path.lstat().st_mtime >= grace_seconds
            except FileNotFoundError:
                continue
            if not old or path.is_symlink() or not _unused(path):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    # --- models --------------------------------------------------------------------------------------

    def _model_dir(self, model: str) -> Path:
        return self.root / "models" / check_name("model", model)

    def _read_version(self, model: str, version: int) -> ModelVersion | None:
        record = read_record(self._model_dir(model) / "versions" / f"{version}.json", ModelVersion)
        if record is not None:
            record.promoted = self.promoted_number(model) == version
        return record

    def promoted_number(self, model: str) -> int | None:
        """The version `model`'s promoted pointer names (None if none); CorruptStoreError if it is damaged."""
        pointer = self._promoted_pointer(model)
        return None if pointer is None else pointer[0]

    def released(self, model: str) -> set[int]:
        """Every version of `model` that was ever promoted (the promoted one included)."""
        pointer = self._promoted_pointer(model)
        return set() if pointer is None else {pointer[0], *pointer[1]}

    def _promoted_pointer(self, model: str) -> tuple[int, list[int]] | None:
        """(promoted version, versions released before it) from promoted.json; None if nothing was promoted."""
        path = self._model_dir(model) / "promoted.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            pointer = json.loads(data)
            number, released = pointer["version"], pointer.get("released", [])
            for n in (number, *released):
                if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                    raise ValueError(f"version {n!r} is not a version number")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # A hub-side fault: never pass a raw parse message to a plant as if its request were wrong.
            raise CorruptStoreError(f"model {model!r}: corrupt promoted pointer {path}: {exc}") from exc
        return number, list(released)

    def _version_numbers(self, model: str) -> list[int]:
        vdir = self._model_dir(model) / "versions"
        if not vdir.is_dir():
            return []
        return sorted(int(p.stem) for p in vdir.glob("*.json") if p.stem.isdigit())

    def publish_model(
        self,
        model: str,
        blob_digest: str,
        *,
        parent: int | None = None,
        round_id: str | None = None,
        metrics: dict[str, float] | None = None,
        promote: bool = False,
        aggregation: AggregationSummary | None = None,
    ) -> ModelVersion:
        """Record a blob as the model's next version.

        Idempotent: if a version with the same blob, parent and round exists, that version is returned
        (so a retried publish or a re-run seeding step never creates a second version).
        """
        check_name("model", model)
        if round_id is not None:
            check_name("round", round_id)
        with _locked(self.root / "locks" / f"model-{model}.lock"), self._blobs_locked():
            if not self.has_blob(blob_digest):
                raise NotFoundError(f"blob {blob_digest} is not in the store")
            if parent is not None and self._read_version(model, parent) is None:
                raise NotFoundError(f"parent version {parent} of model {model!r} does not exist")
            numbers = self._version_numbers(model)
            for n in numbers:
                existing = self._read_version(model, n)
                if existing and (existing.digest, existing.parent, existing.round_id) == (
                    blob_digest,
                    parent,
                    round_id,
                ):
                    return self._promote_locked(model, n) if promote else existing
            record = ModelVersion(
                model=model,
                version=(numbers[-1] + 1) if numbers else 1,
                digest=blob_digest,
                size=self.blob_path(blob_digest).stat().st_size,
                parent=parent,
                round_id=round_id,
                metrics=dict(metrics or {}),
                created_at=time.time(),
                aggregation=aggregation,
            )
            _write_record(self._model_dir(model) / "versions" / f"{record.version}.json", record)
            if promote:
                return self._promote_locked(model, record.version)
            return record

    def get_model(self, model: str, version: int | None = None) -> ModelVersion:
        """A version, or the promoted one when `version` is None (NotFoundError if there is none)."""
        if version is None:
            found = self.promoted(model)
            if found is None:
                raise NotFoundError(f"model {model!r} has no promoted version")
            return found
        found = self._read_version(model, version)
        if found is None:
            raise NotFoundError(f"model {model!r} has no version {version}")
        return found

    def promote(self, model: str, version: int) -> ModelVersion:
        with _locked(self.root / "locks" / f"model-{check_name('model', model)}.lock"):
            return self._promote_locked(model, version)

    def _promote_locked(self, model: str, version: int) -> ModelVersion:
        if self._read_version(model, version) is None:
            raise NotFoundError(f"model {model!r} has no version {version}")
        self.require_version_blob(model, version)
        try:
            earlier = self.released(model)
        except CorruptStoreError:
            earlier = set()  # promoting is how an admin repairs a damaged pointer; what it listed is lost
        released = sorted(earlier | {version})
        pointer = {"version": version, "released": released}
        write_atomic(self._model_dir(model) / "promoted.json", json.dumps(pointer).encode())
        return self.get_model(model, version)

    def promoted(self, model: str) -> ModelVersion | None:
        number = self.promoted_number(model)
        return None if number is None else self._read_version(model, number)

    def versions(self, model: str) -> list[ModelVersion]:
        found = [self._read_version(model, n) for n in self._version_numbers(model)]
        return [v for v in found if v is not None]

    def models(self) -> list[str]:
        return sorted(p.name for p in (self.root / "models").iterdir() if p.is_dir())

    # --- rounds --------------------------------------------------------------------------------------

    def _round_dir(self, round_id: str) -> Path:
        return self.root / "rounds" / check_name("round", round_id)

    def _round_lock(self, round_id: str) -> Path:
        return self.root / "locks" / f"round-{check_name('round', round_id)}.lock"

    def open_round(self, record: RoundRecord) -> RoundRecord:
        """Create a round; re-opening an identical round returns it, a different one is a ConflictError."""
        check_name("round", record.round_id)
        check_name("model", record.model)
        for plant in record.plants:
            check_name("plant", plant)
        if len(set(record.plants)) != len(record.plants):
            raise InvalidNameError(f"round {record.round_id!r} lists a plant more than once")
        if record.max_update_bytes <= 0:
            raise InvalidNameError(f"round {record.round_id!r}: max_update_bytes must be positive")
        self.get_model(record.model, record.base_version)
        self.require_version_blob(record.model, record.base_version)
        with _locked(self._round_lock(record.round_id)):
            existing = self._read_round(record.round_id)
            if existing is not None:
                same = ("model", "base_version", "plants", "max_update_bytes")
                if any(getattr(existing, f) != getattr(record, f) for f in same):
                    raise ConflictError(f"round {record.round_id!r} already exists with different settings")
                return existing
            opened = record.model_copy(
                update={"state": RoundState.OPEN, "opened_at": time.time(), "closed_at": None, "committed": {}}
            )
            _write_record(self._round_dir(record.round_id) / "round.json", opened)
            return opened

    def close_round(self, round_id: str) -> RoundRecord:
        """Stop accepting updates; after this returns, `updates(round_id)` is final. Idempotent."""
        with _locked(self._round_lock(round_id)):
            record = self.get_round(round_id)
            if record.state is RoundState.CLOSED:
                return record
            closed = record.model_copy(update={"state": RoundState.CLOSED, "closed_at": time.time()})
            try:
                _write_record(self._round_dir(round_id) / "round.json", closed)
            except OSError as exc:
                if exc.errno not in _NO_SPACE:
                    raise
                # A full disk must not keep the round open: its partials are what closing frees, so free them
                # first (the round is closing, they could never commit) and write again.
                self._drop_idle_partials(round_id)
                _write_record(self._round_dir(round_id) / "round.json", closed)
        self._drop_idle_partials(round_id)
        return closed

    def _drop_idle_partials(self, round_id: str) -> None:
        """A closed round's partial uploads can never commit; free their space (busy ones end on their own)."""
        pdir = self._round_dir(round_id) / "partial"
        for state in sorted(pdir.glob("*.json")) if pdir.is_dir() else ():
            with contextlib.suppress(BusyError), self.partial_upload(round_id, state.stem) as upload:
                upload.discard()

    def _read_round(self, round_id: str) -> RoundRecord | None:
        return read_record(self._round_dir(round_id) / "round.json", RoundRecord)

    def get_round(self, round_id: str) -> RoundRecord:
        record = self._read_round(round_id)
        if record is None:
            raise NotFoundError(f"unknown round {round_id!r}")
        return record

    def rounds(self) -> list[RoundRecord]:
        """All rounds, oldest opened first; a directory whose name no round can have is fsck's to report."""
        dirs = [p for p in (self.root / "rounds").iterdir() if p.is_dir() and is_name(p.name)]
        found = [self._read_round(p.name) for p in dirs]
        return sorted((r for r in found if r is not None), key=lambda r: (r.opened_at or 0.0, r.round_id))

    # --- updates -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def partial_upload(self, round_id: str, plant: str) -> Iterator[PartialUpload]:
        """Exclusive access to (round, plant)'s partial upload; BusyError if another stream holds it."""
        check_name("round", round_id)
        check_name("plant", plant)
        lock = self.root / "locks" / f"upload-{round_id}+{plant}.lock"  # '+' cannot occur in either name
        busy = f"another upload by plant {plant!r} to round {round_id!r} is in progress"
        with _locked(lock, busy=busy):
            upload = PartialUpload(self, round_id, plant)
            try:
                yield upload
            finally:
                upload.close()

    def partial_bytes(self, plant: str, *, besides: str | None = None) -> int:
        """Bytes `plant`'s unfinished uploads hold on disk, over every round except `besides`."""
        check_name("plant", plant)
        total = 0
        for data in (self.root / "rounds").glob(f"*/partial/{plant}.data"):
            if data.parent.parent.name != besides:
                with contextlib.suppress(FileNotFoundError):
                    total += data.stat().st_size
        return total

    def partial_offset(self, round_id: str, plant: str, sha256: str) -> int:
        """Bytes held durably for (round, plant)'s upload of payload `sha256` (0 for another payload)."""
        pdir = self._round_dir(round_id) / "partial"
        state = read_record(pdir / f"{check_name('plant', plant)}.json", _PartialState)
        if state is None or state.sha256 != sha256:
            return 0
        try:
            return (pdir / f"{plant}.data").stat().st_size
        except FileNotFoundError:
            return 0

    def check_accepts(self, round_id: str, meta: UpdateMeta) -> RoundRecord:
        """Raise the reason the round would refuse this update (before any byte is transferred)."""
        record = self.get_round(round_id)
        if record.state is not RoundState.OPEN:
            raise RoundClosedError(f"round {round_id!r} is closed")
        if meta.plant not in record.plants:
            raise NotAssignedError(f"plant {meta.plant!r} is not assigned to round {round_id!r}")
        if meta.base_version != record.base_version:
            raise BaseMismatchError(
                f"update trained on base version {meta.base_version}, round {round_id!r} is on "
                f"version {record.base_version} of {record.model!r}"
            )
        return record

    def commit_update(
        self,
        meta: UpdateMeta,
        digest: str,
        *,
        bytes_received: int | None = None,
        upload_seconds: float | None = None,
    ) -> tuple[UpdateRecord, bool]:
        """Make a verified blob visible to aggregation as (round, plant)'s update.

        Returns (record, duplicate). One update per (round, plant): committing the same payload again returns
        the existing record with duplicate=True; a different payload raises ConflictError. Runs under the round
        lock, so nothing is committed after `close_round` returns.
        """
        check_name("plant", meta.plant)
        with _locked(self._round_lock(meta.round_id)), self._blobs_locked():
            if not self.has_blob(digest):
                raise NotFoundError(f"blob {digest} is not in the store")
            path = self._round_dir(meta.round_id) / "updates" / f"{meta.plant}.json"
            existing = read_record(path, UpdateRecord)
            if existing is not None:
                if existing.digest == digest:
                    return existing, True
                raise ConflictError(
                    f"plant {meta.plant!r} already committed a different update ({existing.digest}) "
                    f"to round {meta.round_id!r}"
                )
            round_record = self.check_accepts(meta.round_id, meta)
            record = UpdateRecord(
                meta=meta,
                digest=digest,
                received_at=time.time(),
                bytes_received=bytes_received,
                upload_seconds=upload_seconds,
            )
            _write_record(path, record)
            if round_record.committed is not None:
                # Written after the update record: a crash in between leaves an update the round does not list
                # yet (accepted on read), never a listed update without its record (which reads as corruption).
                committed = {**round_record.committed, meta.plant: digest}
                _write_record(
                    self._round_dir(meta.round_id) / "round.json",
                    round_record.model_copy(update={"committed": committed}),
                )
            return record, False

    def get_update(self, round_id: str, plant: str) -> UpdateRecord | None:
        return read_record(self._round_dir(round_id) / "updates" / f"{check_name('plant', plant)}.json", UpdateRecord)

    def updates(self, round_id: str) -> list[UpdateRecord]:
        """Committed updates of a round, by plant name; CorruptStoreError if the records contradict each other."""
        updates, problems = self.checked_updates(round_id)
        if problems:
            raise CorruptStoreError(f"round {round_id!r}: {'; '.join(problems)} (run `plantfed store fsck`)")
        return updates

    def checked_updates(self, round_id: str) -> tuple[list[UpdateRecord], list[str]]:
        """A round's update records and every way they contradict each other or the round record.

        Each record must be filed under its own plant and round and name its declared payload; every update the
        round record lists as committed must still be there with that digest (two plants may upload the same
        bytes, so a shared digest alone proves nothing; a record rewritten to another's digest contradicts the
        round's list).
        """
        record = self.get_round(round_id)
        udir = self._round_dir(round_id) / "updates"
        updates: list[UpdateRecord] = []
        problems: list[str] = []
        for path in sorted(udir.glob("*.json")) if udir.is_dir() else ():
            try:
                update = read_record(path, UpdateRecord)
            except CorruptStoreError as exc:
                problems.append(str(exc))
                continue
            if update is None:
                continue
            meta = update.meta
            if (meta.plant, meta.round_id) != (path.stem, round_id):
                problems.append(
                    f"{path} is filed as plant {path.stem!r} but names plant {meta.plant!r} of round {meta.round_id!r}"
                )
            elif update.digest != meta.sha256:
                problems.append(
                    f"plant {meta.plant!r}'s update record {path} names blob {update.digest}, but the "
                    f"plant declared {meta.sha256}"
                )
            updates.append(update)
        by_plant = {u.meta.plant: u for u in updates}
        for plant, digest in sorted((record.committed or {}).items()):
            if plant not in by_plant:
                problems.append(
                    f"plant {plant!r}'s committed update ({digest}) has no record: {udir / f'{plant}.json'} is missing"
                )
            elif by_plant[plant].digest != digest:
                problems.append(
                    f"plant {plant!r}'s update record names blob {by_plant[plant].digest}, but the round "
                    f"committed {digest}"
                )
        return updates, problems

    # --- plant-side evaluations of a round's candidate ---------------------------------------------------

    def candidate(self, round_id: str) -> ModelVersion | None:
        """The newest version aggregated from `round_id` (what its plants are asked to evaluate), if any."""
        record = self.get_round(round_id)
        produced = [v for v in self.versions(record.model) if v.round_id == round_id]
        return produced[-1] if produced else None

    def record_evaluation(self, evaluation: EvaluationRecord) -> tuple[EvaluationRecord, bool]:
        """Keep a plant's evaluation of the round's candidate; returns (record, duplicate).

        Only a plant whose update the candidate was aggregated from may report, only for the round's candidate,
        and only numbers its update declared it can measure (`evaluation_problems`): an evaluation weighs a
        promotion decision, so a plant cannot outweigh the others with samples or scores it never had.
        The first report per (round, plant, version) wins: a re-run evaluation pod gets the kept record back
        (duplicate=True) instead of replacing what a promotion decision may already rest on.
        """
        check_name("plant", evaluation.plant)
        record = self.get_round(evaluation.round_id)
        if evaluation.plant not in record.plants:
            raise NotAssignedError(f"plant {evaluation.plant!r} is not assigned to round {evaluation.round_id!r}")
        candidate = self.candidate(evaluation.round_id)
        if candidate is None or candidate.version != evaluation.version:
            have = "no candidate yet" if candidate is None else f"candidate version {candidate.version}"
            raise NotCandidateError(
                f"round {evaluation.round_id!r} has {have}; "
                f"an evaluation of version {evaluation.version} is not asked for"
            )
        if candidate.aggregation is not None and evaluation.plant not in candidate.aggregation.plants:
            raise NotCandidateError(
                f"plant {evaluation.plant!r}'s update is not in version {candidate.version}: "
                "only the plants it was aggregated from evaluate it"
            )
        update = self.get_update(evaluation.round_id, evaluation.plant)
        if update is None:
            raise NotCandidateError(
                f"plant {evaluation.plant!r} has no committed update in round {evaluation.round_id!r}: "
                "only the plants that trained the round evaluate its candidate"
            )
        problems = evaluation_problems(evaluation, update.meta)
        if problems:
            raise InvalidValueError(f"evaluation of version {evaluation.version} refused: {'; '.join(problems)}")
        with _locked(self._round_lock(evaluation.round_id)):
            path = self._round_dir(evaluation.round_id) / "evaluations" / f"{evaluation.plant}.json"
            existing = read_record(path, EvaluationRecord)
            if existing is not None and existing.version == evaluation.version:
                return existing, True
            kept = evaluation.model_copy(update={"received_at": time.time()})
            _write_record(path, kept)
            return kept, False

    def evaluations(self, round_id: str) -> list[EvaluationRecord]:
        """Plants' evaluations of the round's candidate, by plant name."""
        self.get_round(round_id)
        edir = self._round_dir(round_id) / "evaluations"
        found = [read_record(p, EvaluationRecord) for p in sorted(edir.glob("*.json"))] if edir.is_dir() else []
        return [e for e in found if e is not None]

    # --- retention: what the store may forget (the rule: plantfed.engine.retention) -------------------------

    def _blobs_locked(self) -> contextlib.AbstractContextManager[None]:
        """Held while a record starts referencing a blob, and while the retention deletes one."""
        return _locked(self.root / "locks" / "blobs.lock")

    def pruned_versions(self, model: str) -> set[int]:
        """Versions of `model` whose blob the retention dropped (their records stay)."""
        path = self._model_dir(model) / "pruned.json"
        try:
            data = json.loads(path.read_bytes())
            return {int(n) for n in data["versions"]}
        except FileNotFoundError:
            return set()
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStoreError(f"model {model!r}: corrupt retention marker {path}: {exc}") from exc

    def round_pruned(self, round_id: str) -> bool:
        """Whether the retention dropped `round_id`'s update blobs (its records stay)."""
        return (self._round_dir(round_id) / "pruned.json").is_file()

    def require_version_blob(self, model: str, version: int) -> None:
        """PrunedError if the retention dropped this version's blob: nothing may build on or serve it again."""
        if version in self.pruned_versions(model):
            raise PrunedError(
                f"model {model!r} version {version} was removed by the store's retention (its record remains; "
                "the store keeps the promoted, pinned and newest versions' blobs)"
            )

    def require_round_updates(self, round_id: str) -> None:
        """PrunedError if the retention dropped `round_id`'s update blobs (a finished round is never aggregated)."""
        if self.round_pruned(round_id):
            raise PrunedError(
                f"round {round_id!r} is finished and the store's retention removed its update blobs "
                "(their records remain)"
            )

    def retention_view(self, pinned: Mapping[str, set[int]] | None = None) -> StoreView:
        """What `plantfed.engine.retention.plan` reads, from the records (blobs are never read)."""
        models = self.models()
        versions = {m: [VersionView(v.version, v.digest, v.round_id) for v in self.versions(m)] for m in models}
        rounds = []
        for r in self.rounds():
            digests = frozenset(u.digest for u in self.checked_updates(r.round_id)[0])
            closed = r.state is RoundState.CLOSED
            rounds.append(
                RoundView(r.round_id, r.model, r.base_version, closed, r.opened_at or 0.0, r.closed_at, digests)
            )
        return StoreView(
            versions=versions,
            promoted={m: self.promoted_number(m) for m in models},
            released={m: self.released(m) for m in models},
            rounds=rounds,
            pinned=dict(pinned or {}),
            pruned_versions={m: self.pruned_versions(m) for m in models},
            pruned_rounds=frozenset(r.round_id for r in rounds if self.round_pruned(r.round_id)),
        )

    def apply_retention(self, policy: RetentionPolicy, pinned: Mapping[str, set[int]] | None = None) -> RetentionRun:
        """Drop what `policy` lets go; crash-safe and idempotent (see the module docstring)."""
        with _locked(self.root / "locks" / "retention.lock"):
            todo = plan(self.retention_view(pinned), policy)
            for model, numbers in sorted(todo.versions.items()):
                with _locked(self.root / "locks" / f"model-{model}.lock"):
                    pruned = sorted(self.pruned_versions(model) | numbers)
                    write_atomic(self._model_dir(model) / "pruned.json", json.dumps({"versions": pruned}).encode())
            for round_id in sorted(todo.rounds):
                with _locked(self._round_lock(round_id)):
                    write_atomic(self._round_dir(round_id) / "pruned.json", json.dumps({"updates": True}).encode())
            for model, numbers in sorted(todo.versions.items()):
                for number in sorted(numbers):
                    self._drop_server_state(model, number)
            freed, deleted = 0, 0
            with self._blobs_locked():
                referenced = self._referenced_digests()
                for digest in sorted(todo.digests - referenced):
                    path = self.blob_path(digest)
                    with contextlib.suppress(FileNotFoundError):
                        size = path.stat().st_size
                        path.unlink()
                        freed, deleted = freed + size, deleted + 1
            return RetentionRun(
                versions={m: sorted(n) for m, n in todo.versions.items()},
                rounds=sorted(todo.rounds),
                blobs=deleted,
                bytes_freed=freed,
            )

    def _referenced_digests(self) -> set[str]:
        """Every blob a record still needs: versions not pruned, updates of rounds not pruned."""
        found = set()
        for model in self.models():
            gone = self.pruned_versions(model)
            found |= {v.digest for v in self.versions(model) if v.version not in gone}
        for r in self.rounds():
            if not self.round_pruned(r.round_id):
                found |= {u.digest for u in self.checked_updates(r.round_id)[0]}
        return found

    def _drop_server_state(self, model: str, version: int) -> None:
        """Remove the optimiser state `version` led to: renamed into tmp/ first, so a crash leaves a leftover the
        sweep removes, never a half-deleted state a later aggregation could start from."""
        kept = self.server_state_dir(model, version)
        if kept is None:
            return
        doomed = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix="pruned-state-"))
        kept.rename(doomed / "state")
        shutil.rmtree(doomed, ignore_errors=True)

    def size_bytes(self) -> dict[str, int]:
        """Bytes the store holds on disk, by part: `blobs`, `partial` (uploads in progress), `other`."""
        sizes = {"blobs": 0, "partial": 0, "other": 0}
        for path in self.root.rglob("*"):
            try:
                if not path.is_file() or path.is_symlink():
                    continue
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            part = path.relative_to(self.root).parts
            key = "blobs" if part[0] == "blobs" else "partial" if "partial" in part[:3] else "other"
            sizes[key] += size
        return sizes

    # --- sections: the privacy ledger and the server optimiser's state ------------------------------------

    def ledger_path(self, model: str) -> Path:
        """Where `model`'s privacy ledger lives (read it with `read_ledger`, change it with `editing_ledger`)."""
        return self.root / "privacy" / f"{check_name('model', model)}.json"

    def read_ledger(self, model: str) -> PrivacyLedgerRecord:
        """`model`'s privacy ledger (empty if nothing was ever charged); a corrupt one is an error, never reset."""
        path = self.ledger_path(model)
        try:
            return read_record(path, PrivacyLedgerRecord) or PrivacyLedgerRecord()
        except StoreError as exc:
            raise LedgerError(f"corrupt privacy ledger {path}: {exc.__cause__ or exc}") from exc

    @contextlib.contextmanager
    def editing_ledger(self, model: str) -> Iterator[PrivacyLedgerRecord]:
        """Read-modify-write `model`'s ledger under its lock; written atomically when the block changed it.

        An exception in the block leaves the ledger as it was.
        """
        with _locked(self.root / "locks" / f"privacy-{check_name('model', model)}.lock"):
            ledger = self.read_ledger(model)
            before = ledger.model_dump()
            yield ledger
            if ledger.model_dump() != before:
                _write_record(self.ledger_path(model), ledger)

    def server_state_dir(self, model: str, version: int) -> Path | None:
        """The server optimiser's state after the round that produced `version`, if one was kept."""
        path = self.root / "server-state" / check_name("model", model) / f"after-v{int(version)}"
        return path if path.is_dir() else None

    @contextlib.contextmanager
    def scratch_dir(self, prefix: str = "work-") -> Iterator[Path]:
        """A private directory inside the store (so results can be renamed into place), removed on exit."""
        path = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix=prefix))
        fd = _hold(path)  # in use: `sweep_leftovers` leaves it alone
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            os.close(fd)

    def stage_server_state(self, model: str, base_version: int, into: Path) -> Path:
        """Copy the state `base_version` led to into the new directory `into` (empty if there is none).

        The optimiser then rewrites its copy; the kept state is never modified, so a retry finds it intact.
        """
        kept = self.server_state_dir(model, base_version)
        if kept is not None:
            shutil.copytree(kept, into)
        else:
            into.mkdir(parents=True)
        return into

    def keep_server_state(self, model: str, version: int, staged: Path) -> Path:
        """Move `staged` into place as the state `version` led to; the first kept state wins (idempotent)."""
        with _locked(self.root / "locks" / f"model-{check_name('model', model)}.lock"):
            if self._read_version(model, version) is None:
                raise NotFoundError(f"model {model!r} has no version {version}")
            target = self.root / "server-state" / model / f"after-v{int(version)}"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                for path in sorted(staged.rglob("*")):
                    if path.is_file():
                        with open(path, "rb") as f:
                            os.fsync(f.fileno())
                staged.rename(target)
                fsync_dir(target.parent)
            return target
