"""How much of the hub one caller, or all of them together, may hold: the exchange's limits and their policy.

The exchange serves every call on one event loop, so an open stream costs memory, not a thread; these limits
bound that memory and stop a slow or hostile caller from holding resources others need:

* **admission** (`Admission`): at most `max_calls` exchange calls at once, `max_transfers` of them uploads,
  downloads or publishes (each buffers about two chunks), and `max_calls_per_plant` for one plant's token. A
  call over a limit ends at once with RESOURCE_EXHAUSTED naming the limit; clients retry it with backoff and
  resume from the offset the hub holds.
* **first message** (`first_message_s`): a call that sent its headers must send its first message within this
  time, so half-open calls cannot pile up.
* **minimum transfer rate** (`MinimumRate`): a stream must keep moving at least `min_transfer_rate` bytes/s; it
  may fall behind by `transfer_grace_s` seconds' worth plus its latest message before it is ended
  (DEADLINE_EXCEEDED, which clients resume from), so a stream that merely trickles (slowloris) cannot hold a
  transfer slot for long.
* **connections** (HTTP/2, applied by `plantfed.exchange.transport.server_options`): a cap on connections,
  streams per connection, a TLS/HTTP/2 handshake timeout, an idle timeout for connections without calls and
  keepalive pings that drop dead peers (and so their calls).

Everything here is pure (no gRPC, no store, no clock) and tested on its own; the server applies it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, cast


def _limit(default: float, meaning: str) -> Any:
    return field(default=default, metadata={"help": meaning})


@dataclass(frozen=True)
class ServerLimits:
    """The exchange's resource limits: the `plantfed exchange` flags (`flag`) and the hub chart's `exchange.limits`."""

    io_threads: int = _limit(
        8, "threads for the store's blocking work (disk I/O, fsync, sha256); no call holds one while it waits"
    )
    max_calls: int = _limit(1024, "exchange calls in progress at once, all callers together")
    max_transfers: int = _limit(
        256, "uploads, downloads and publishes in progress at once (each buffers about two chunks)"
    )
    max_calls_per_plant: int = _limit(
        16, "calls in progress at once with one plant's token (agent, training and evaluation pods)"
    )
    first_message_s: float = _limit(20.0, "seconds a call may take to send its first message after its headers")
    min_transfer_rate: int = _limit(16 << 10, "bytes per second every stream must sustain; 0: no minimum")
    transfer_grace_s: float = _limit(
        60.0, "seconds' worth of the minimum rate a stream may fall behind before it is ended"
    )
    max_connections: int = _limit(2048, "client connections accepted at once")
    max_streams_per_connection: int = _limit(64, "calls (HTTP/2 streams) at once on one connection")
    handshake_timeout_s: float = _limit(20.0, "seconds a new connection may take for its TLS and HTTP/2 handshakes")
    connection_idle_s: float = _limit(
        300.0, "seconds a connection may stay open without calls (clients reconnect on demand)"
    )
    keepalive_s: float = _limit(30.0, "seconds between the hub's pings of a connection that is silent")
    keepalive_timeout_s: float = _limit(10.0, "seconds a pinged peer has to answer before its connection is dropped")
    store_reserve_bytes: int = _limit(
        256 << 20,
        "bytes of the store's filesystem kept free (for records, CloseRound, aggregation): an upload whose "
        "remaining bytes would eat into them is refused before any is read",
    )
    plant_partial_bytes: int = _limit(
        16 << 30, "bytes of unfinished uploads one plant may hold in the store, all its rounds together"
    )

    @staticmethod
    def flag(name: str) -> str:
        """The command-line flag of field `name`: `first_message_s` -> `--first-message-seconds`."""
        stem = name[: -len("_s")] + "_seconds" if name.endswith("_s") else name
        return "--" + stem.replace("_", "-")

    @classmethod
    def defaults(cls) -> dict[str, tuple[type, float, str]]:
        """Each limit's type, default and meaning, for flags and docs."""
        hints = {"int": int, "float": float}
        return {f.name: (hints[str(f.type)], cast(float, f.default), f.metadata["help"]) for f in fields(cls)}

    def __post_init__(self) -> None:
        for name in ("io_threads", "max_calls", "max_transfers", "max_calls_per_plant", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_streams_per_connection < 1:
            raise ValueError(f"max_streams_per_connection must be at least 1, got {self.max_streams_per_connection}")
        for name in ("store_reserve_bytes", "plant_partial_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 bytes, got {getattr(self, name)}")
        if self.min_transfer_rate < 0:
            raise ValueError(f"min_transfer_rate must be >= 0 bytes/s, got {self.min_transfer_rate}")
        for name in (
            "first_message_s",
            "transfer_grace_s",
            "handshake_timeout_s",
            "connection_idle_s",
            "keepalive_s",
            "keepalive_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive seconds, got {getattr(self, name)}")


class Overloaded(Exception):
    """A call refused because a limit is reached (RESOURCE_EXHAUSTED: worth retrying later)."""


class TooSlow(Exception):
    """A call ended because it sent or read too little, too late (DEADLINE_EXCEEDED)."""


class NoMessage(TooSlow):
    """A call that sent its headers but not its first message within `first_message_s`."""


class Admission:
    """Counts calls in progress and refuses the one that would exceed a limit. Used from one thread (the loop)."""

    def __init__(self, limits: ServerLimits) -> None:
        self._limits = limits
        self._calls = 0
        self._transfers = 0
        self._per_plant: Counter[str] = Counter()

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def transfers(self) -> int:
        return self._transfers

    def admit(self, plant: str | None, *, transfer: bool) -> Callable[[], None]:
        """Count a call in (a plant's, or None for the admin); returns the function that counts it out."""
        limits = self._limits
        if self._calls >= limits.max_calls:
            raise Overloaded(f"the hub is serving its maximum of {limits.max_calls} calls (max_calls); retry later")
        if transfer and self._transfers >= limits.max_transfers:
            raise Overloaded(
                f"the hub is serving its maximum of {limits.max_transfers} concurrent transfers (max_transfers); "
                "retry later, the upload resumes where the hub's copy ends"
            )
        if plant is not None and self._per_plant[plant] >= limits.max_calls_per_plant:
            raise Overloaded(
                f"plant {plant!r} already has {limits.max_calls_per_plant} calls in progress on the hub "
                "(max_calls_per_plant); retry when one has finished"
            )
        self._calls += 1
        self._transfers += transfer
        if plant is not None:
            self._per_plant[plant] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._calls -= 1
            self._transfers -= transfer
            if plant is not None:
                self._per_plant[plant] -= 1
                if not self._per_plant[plant]:
                    del self._per_plant[plant]

        return release


@dataclass
class SpaceBook:
    """The store space uploads in progress are still owed: each one's declared bytes not yet written.

    Free space alone is not enough: two uploads that each fit would together fill the disk. A stream is
    admitted only if what it still needs, plus what every other stream in progress is owed, leaves
    `store_reserve_bytes` free; and only while its plant's unfinished uploads stay within `plant_partial_bytes`.
    """

    limits: ServerLimits
    owed: dict[tuple[str, str], int] = field(default_factory=dict)

    def admit(self, key: tuple[str, str], need: int, free: int, plant_held: int) -> None:
        """Book `need` bytes for `key` (round, plant), or raise Overloaded saying which limit it would break.

        `free`: the store filesystem's free bytes now; `plant_held`: bytes the plant's unfinished uploads in
        other rounds hold on disk.
        """
        round_id, plant = key
        owed = sum(n for k, n in self.owed.items() if k != key)
        room = free - owed - self.limits.store_reserve_bytes
        if need > room:
            raise Overloaded(
                f"the hub's store cannot take this upload now: it needs {need} more bytes, and of {free} bytes free "
                f"{owed} are owed to uploads in progress and {self.limits.store_reserve_bytes} are kept in reserve "
                "(store_reserve_bytes); retry later, the upload resumes where the hub's copy ends"
            )
        if plant_held + need > self.limits.plant_partial_bytes:
            raise Overloaded(
                f"plant {plant!r} would hold {plant_held + need} bytes of unfinished uploads ({plant_held} in other "
                f"rounds, {need} for round {round_id!r}), more than its limit of {self.limits.plant_partial_bytes} "
                "(plant_partial_bytes); retry once its other rounds closed or their uploads completed"
            )
        self.owed[key] = need

    def wrote(self, key: tuple[str, str], nbytes: int) -> None:
        if key in self.owed:
            self.owed[key] = max(0, self.owed[key] - nbytes)

    def release(self, key: tuple[str, str]) -> None:
        self.owed.pop(key, None)


class MinimumRate:
    """Progress-aware minimum rate of one stream, as a credit of bytes.

    The credit drains at `rate` bytes/s while the hub waits for the peer (not while the hub itself is busy, e.g.
    writing to a slow disk) and grows by every byte moved. It is capped at `grace` seconds' worth of the rate
    plus the size of the stream's latest message, so a fast start banks no more than that, and the stream is too
    slow once the credit is spent. A message counts only when complete, hence the message in the cap: a stream
    of 1 MiB chunks may wait a whole chunk's time, one that trickles single bytes barely more than `grace`.
    Before the first message the cap assumes a message of `first_message_bytes`.
    """

    def __init__(self, rate: float, grace: float, first_message_bytes: int) -> None:
        self.rate = rate
        self.grace = grace
        self.moved = 0
        self._cap = rate * grace + first_message_bytes
        self._credit = self._cap

    @classmethod
    def for_limits(cls, limits: ServerLimits, first_message_bytes: int) -> MinimumRate:
        return cls(limits.min_transfer_rate, limits.transfer_grace_s, first_message_bytes)

    def patience(self) -> float:
        """Seconds the hub may wait for the peer's next message (math.inf without a minimum rate)."""
        return self._credit / self.rate if self.rate > 0 else math.inf

    def record(self, nbytes: int, waited: float) -> None:
        """A message of `nbytes` moved after waiting `waited` seconds for the peer (at most `patience()`)."""
        self._cap = self.rate * self.grace + nbytes
        self._credit = min(self._cap, self._credit - self.rate * waited + nbytes)
        self.moved += nbytes

    def describe(self, what: str) -> str:
        return (
            f"{what} stalled after {self.moved} bytes: slower than the hub's minimum transfer rate of "
            f"{self.rate:g} bytes/s for more than its grace of {self.grace:g} s (min_transfer_rate, "
            "transfer_grace_s); resume from the bytes the hub holds"
        )
