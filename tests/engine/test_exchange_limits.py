"""The exchange's limits as pure policy: admission counts, the minimum transfer rate, and the client's backoff."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest

from plantfed.exchange.client import RetryPolicy, _Busy, _failure, _Transient
from plantfed.exchange.errors import ExchangeError
from plantfed.exchange.limits import Admission, MinimumRate, Overloaded, ServerLimits
from plantfed.exchange.status import status_for


def test_admission_counts_calls_transfers_and_each_plant_separately() -> None:
    admission = Admission(ServerLimits(max_calls=5, max_transfers=2, max_calls_per_plant=3))
    a1 = admission.admit("plant-a", transfer=True)
    admission.admit("plant-b", transfer=True)
    with pytest.raises(Overloaded, match=r"maximum of 2 concurrent transfers \(max_transfers\)"):
        admission.admit("plant-c", transfer=True)
    admission.admit("plant-a", transfer=False)  # not a transfer: still admitted
    admission.admit("plant-a", transfer=False)
    with pytest.raises(Overloaded, match=r"plant 'plant-a' already has 3 calls in progress"):
        admission.admit("plant-a", transfer=False)
    admission.admit(None, transfer=False)  # the admin has no per-plant limit
    with pytest.raises(Overloaded, match=r"maximum of 5 calls \(max_calls\)"):
        admission.admit("plant-c", transfer=False)
    assert (admission.calls, admission.transfers) == (5, 2)

    a1()
    a1()  # releasing twice counts out once
    assert (admission.calls, admission.transfers) == (4, 1)
    admission.admit("plant-c", transfer=True)  # the freed transfer slot is usable again
    with pytest.raises(Overloaded):
        admission.admit("plant-c", transfer=True)


def test_refusals_map_to_the_codes_clients_act_on() -> None:
    assert status_for(Overloaded("x")) is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_stream_at_the_minimum_rate_is_never_too_slow() -> None:
    rate = MinimumRate(rate=1000, grace=2, first_message_bytes=4000)
    assert rate.patience() == pytest.approx(6.0)  # (2 s x 1000 B/s + one 4000 B message) / 1000 B/s
    for _ in range(1000):  # 4000-byte messages, each arriving just as its time at the minimum rate is up
        assert rate.patience() >= 4.0
        rate.record(4000, waited=4.0)
    assert rate.moved == 4_000_000


def test_a_fast_start_banks_no_more_than_the_grace() -> None:
    rate = MinimumRate(rate=1000, grace=2, first_message_bytes=4000)
    for _ in range(100):
        rate.record(4000, waited=0.0)  # 400 kB at once
    assert rate.patience() == pytest.approx(6.0)


def test_a_trickle_of_tiny_messages_runs_out_of_credit_within_the_grace() -> None:
    rate = MinimumRate(rate=1000, grace=2, first_message_bytes=4000)
    rate.record(1, waited=0.5)  # one byte every half second (slowloris)
    lasted = 0.5
    while rate.patience() >= 0.5:
        rate.record(1, waited=0.5)
        lasted += 0.5
    # After its first (one-byte) message it is ended within the grace, plus the few bytes' worth it sent.
    assert lasted + rate.patience() <= 0.5 + 2.0 + 0.01


def test_no_minimum_rate_waits_forever() -> None:
    assert MinimumRate(rate=0, grace=60, first_message_bytes=1 << 20).patience() == math.inf


@pytest.mark.parametrize(
    ("field", "value"),
    [("io_threads", 0), ("max_transfers", 0), ("min_transfer_rate", -1), ("first_message_s", 0.0)],
)
def test_unusable_limits_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ServerLimits(**{field: value})  # type: ignore[arg-type]  # deliberately wrong values


def test_every_limit_has_a_flag_and_a_meaning() -> None:
    defaults = ServerLimits.defaults()
    restored: dict[str, Any] = {name: default for name, (_, default, _) in defaults.items()}
    assert ServerLimits(**restored) == ServerLimits()
    assert ServerLimits.flag("first_message_s") == "--first-message-seconds"
    assert ServerLimits.flag("max_transfers") == "--max-transfers"
    assert all(meaning for _, _, meaning in defaults.values())


def test_busy_backoff_is_jittered_exponential_and_ends_at_its_patience() -> None:
    policy = RetryPolicy(busy_patience=100.0, busy_initial_backoff=1.0, busy_max_backoff=8.0)
    waits = list(policy.busy_delays())
    assert sum(waits) == pytest.approx(100.0)
    assert all(0 < w <= 8.0 for w in waits)
    assert waits[0] <= 1.0 and max(waits[:-1]) > 4.0  # grows from the first wait towards the cap


class _Err(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "hub says"


def test_what_the_client_retries() -> None:
    assert isinstance(_failure(_Err(grpc.StatusCode.RESOURCE_EXHAUSTED), stream=False), _Busy)
    assert isinstance(_failure(_Err(grpc.StatusCode.UNAVAILABLE), stream=False), _Transient)
    # A stream has no client deadline: DEADLINE_EXCEEDED is the hub ending a stalled transfer, worth resuming.
    assert isinstance(_failure(_Err(grpc.StatusCode.DEADLINE_EXCEEDED), stream=True), _Transient)
    unary_timeout = _failure(_Err(grpc.StatusCode.DEADLINE_EXCEEDED), stream=False)
    assert isinstance(unary_timeout, ExchangeError) and not isinstance(unary_timeout, _Transient)
    assert isinstance(_failure(_Err(grpc.StatusCode.PERMISSION_DENIED), stream=True), ExchangeError)
