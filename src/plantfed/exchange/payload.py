"""What the exchange checks in an uploaded payload before it commits it.

`check_safetensors` parses only the JSON header and validates every tensor's offsets against the file, so it
is cheap on a multi-GB payload and never executes anything from it (no pickle anywhere). `UpdateCheck` goes
further for plant updates: it checks the update against the round's base model (every tensor present with the
base's shape and the codec's dtype, nothing unexpected, no NaN/Inf; `plantfed.formats.codecs.check_update`), so a
bad update is refused at upload, naming the tensor, instead of failing the whole round's aggregation later.
Its values are judged while the bytes arrive (`UpdateCheck.scan`, fed by the partial upload), so the hub does not
read a multi-GB update back before committing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from pathlib import Path

from safetensors import SafetensorError, safe_open

from plantfed.contract.records import UpdateMeta
from plantfed.formats.scan import ValueScan


class InvalidPayloadError(ValueError):
    """The payload is not a usable safetensors file."""


def check_safetensors(path: Path) -> None:
    try:
        with safe_open(str(path), framework="numpy") as f:
            f.keys()
    except SafetensorError as exc:
        raise InvalidPayloadError(f"payload is not a valid safetensors file: {exc}") from exc


class PayloadCheck(str, Enum):
    """How deeply the exchange checks uploaded updates (published models always get `format`)."""

    #: Against the round's base model: tensor names, shapes, dtypes for the codec, finite values.
    UPDATE = "update"
    #: Only that the payload is a well-formed safetensors file (for tests with synthetic payloads).
    FORMAT = "format"
    NONE = "none"


class UpdateCheck:
    """Validates one plant's update against its round's base model file (a callable for `finalize`).

    `scan` must be shown every byte of the payload, in order (`PartialUpload.begin`'s observer); if it was not,
    its result is None and the check reads the whole file instead.
    """

    def __init__(self, meta: UpdateMeta, base_path: Path, local_patterns: Sequence[str] = ()) -> None:
        self._meta = meta
        self._base = base_path
        self._exclude = tuple(local_patterns)
        self.scan = ValueScan()

    def __call__(self, path: Path) -> None:
        from plantfed.formats.codecs import PayloadError, check_update  # torch: only where updates are checked

        try:
            check_update(
                path,
                self._base,
                self._meta.codec,
                self.scan.result(),
                exclude=self._exclude,
                partial=self._meta.partial,
            )
        except PayloadError as exc:
            # The message names the hub's temporary file; the plant knows its update by round and plant.
            reason = str(exc).replace(f"update {path}: ", "").replace(str(path), "the payload")
            raise InvalidPayloadError(
                f"update from plant {self._meta.plant!r} for round {self._meta.round_id!r} refused: {reason}"
            ) from exc
