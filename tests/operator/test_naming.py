"""The one naming rule for derived Kubernetes names, and the names every Job of the hub and the plants gets from it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantfed.contract.naming import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    MAX_LABEL_LENGTH,
    MAX_SUBDOMAIN_LENGTH,
    bounded_name,
)
from plantfed.hub.jobs import init_job_name
from plantfed.hub.reconcile.round import aggregation_job_name
from plantfed.plant.agent.naming import evaluation_job_name, training_job_name

DERIVED = {
    "aggregation": aggregation_job_name,
    "init": init_job_name,
    "training": training_job_name,
    "evaluation": evaluation_job_name,
}

_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True)
#: Object names as the API server admits them: RFC 1123 subdomains up to 253 characters.
subdomains = (
    st.lists(_label, min_size=1, max_size=12).map(".".join).filter(lambda name: len(name) <= MAX_SUBDOMAIN_LENGTH)
)


def fits_a_label_value(name: str) -> bool:
    """A Job's name becomes its pods' `job-name` label value: at most 63 characters of the label-value alphabet."""
    return len(name) <= MAX_LABEL_LENGTH and re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", name) is not None


@pytest.mark.parametrize("kind", sorted(DERIVED))
@given(name=subdomains)
def test_derived_job_names_are_valid_deterministic_and_fit_a_label(kind: str, name: str) -> None:
    derived = DERIVED[kind](name)
    assert derived == DERIVED[kind](name)
    assert re.fullmatch(DNS_SUBDOMAIN, derived), derived
    assert fits_a_label_value(derived), derived


@pytest.mark.parametrize("kind", sorted(DERIVED))
@given(a=subdomains, b=subdomains)
def test_distinct_rounds_never_share_a_job(kind: str, a: str, b: str) -> None:
    if a != b:
        assert DERIVED[kind](a) != DERIVED[kind](b)


def test_short_names_are_kept_readable_and_long_ones_cut_with_a_digest_of_the_whole() -> None:
    assert aggregation_job_name("bearing-r7") == "bearing-r7-aggregate"
    assert init_job_name("bearing") == "bearing-init"
    assert training_job_name("bearing-r7") == "train-bearing-r7"
    assert evaluation_job_name("bearing-r7") == "eval-bearing-r7"
    long = "press-line-" + "x" * 60 + "-r12"
    cut = aggregation_job_name(long)
    assert len(cut) == MAX_LABEL_LENGTH
    assert re.fullmatch(r"press-line-x{33}-[0-9a-f]{8}-aggregate", cut)
    # The names of Jobs created before this rule was shared are unchanged, so an upgraded operator finds them.
    assert cut == "press-line-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-19323963-aggregate"
    assert init_job_name("m" * 63) == "m" * 49 + "-6e80a1cc-init"


def test_a_cut_never_ends_a_dns_label_with_a_dash_or_dot() -> None:
    name = bounded_name("a" * 43 + "." + "b" * 40, suffix="-aggregate")  # cut right after the dot
    assert name.startswith("a" * 43 + "-") and re.fullmatch(DNS_SUBDOMAIN, name), name


def test_the_rule_refuses_affixes_that_leave_no_room() -> None:
    with pytest.raises(ValueError, match="no room"):
        bounded_name("x" * 80, prefix="p" * 30, suffix="s" * 30)


def test_the_crd_name_patterns_are_the_rules() -> None:
    assert re.fullmatch(DNS_LABEL, "plant-a") and not re.fullmatch(DNS_LABEL, "plant.a")
    assert re.fullmatch(DNS_SUBDOMAIN, "plant.a") and not re.fullmatch(DNS_SUBDOMAIN, "-plant")
