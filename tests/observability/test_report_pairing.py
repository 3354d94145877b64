"""How `plantfed report --prometheus` turns time series into per-round points (no Prometheus needed).

The end-to-end check against a real Prometheus is test_prometheus.py; these cover the cases a single
simulation does not produce: a restarted campaign in the window and a counter reset.
"""

from __future__ import annotations

import pytest

from plantfed.sim.report import _latest_campaign, _per_round_increase, parse_duration


def test_only_the_latest_campaign_is_drawn():
    numbers = [(0, 1), (10, 2), (20, 3), (30, 1), (40, 2)]
    assert _latest_campaign(numbers) == [(30, 1), (40, 2)]


def test_bytes_per_round_from_a_counter_with_a_reset():
    rounds = [1, 2, 3]
    first = {1: 10.0, 2: 20.0, 3: 30.0}
    # 100 bytes in round 1, 50 in round 2, then the exchange restarted and counted 70 in round 3.
    counter = {5.0: 40.0, 10.0: 100.0, 15.0: 120.0, 20.0: 150.0, 25.0: 20.0, 30.0: 70.0}
    assert _per_round_increase(counter, rounds, first, begin=10.0) == [100.0, 50.0, 70.0]


def test_durations():
    assert parse_duration("6h") == 6 * 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    for bad in ("6 hours", "h", "", "1h-"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)
