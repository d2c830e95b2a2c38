"""The compiled index decides exactly as pycasbin does on the same policy (hypothesis)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soc2kit.authz.index import Assignment, CompiledPolicy, Grant, Snapshot
from soc2kit.authz.model import ROLE_PREFIX, SUBJECT_PREFIX, WILDCARD, casbin_enforcer

logging.getLogger("casbin").setLevel(logging.WARNING)

NOW = datetime(2026, 11, 26, tzinfo=UTC)
ROLES = st.sampled_from(["r0", "r1", "r2", "r3", "r4", "a,b", 'q"x', ".*"])
SUBJECTS = st.sampled_from(["alice", "bob", "carol", "r1"])  # "r1" also names a role
TENANTS = st.sampled_from([WILDCARD, "t1", "t2"])
RESOURCES = st.sampled_from(["inv", "pay", "a,b"])
ACTIONS = st.sampled_from(["read", "write"])


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    grants = draw(st.lists(st.builds(Grant, ROLES, RESOURCES, ACTIONS, TENANTS), max_size=12))
    assignments = draw(
        st.lists(
            st.builds(Assignment, SUBJECTS, ROLES, TENANTS),
            max_size=10,
            unique_by=lambda a: (a.subject, a.role, a.tenant),
        )
    )
    # An acyclic hierarchy: a role may inherit only from roles later in the list.
    order = ["r0", "r1", "r2", "r3", "r4", "a,b", 'q"x', ".*"]
    pairs = draw(st.lists(st.tuples(st.integers(0, 6), st.integers(1, 7)), max_size=6))
    inheritance = sorted({(order[i], order[j]) for i, j in pairs if i < j})
    return Snapshot(1, grants, assignments, inheritance)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), SUBJECTS, TENANTS, RESOURCES, ACTIONS)
def test_subject_decisions_match_pycasbin(
    snap: Snapshot, subject: str, tenant: str, resource: str, action: str
) -> None:
    oracle = casbin_enforcer(snap)
    index = CompiledPolicy(snap)
    expected = oracle.enforce(SUBJECT_PREFIX + subject, tenant, resource, action)
    got = index.decide(subject, (), tenant, resource, action, NOW)
    assert got.allowed == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), ROLES, TENANTS, RESOURCES, ACTIONS)
def test_token_role_decisions_match_pycasbin(
    snap: Snapshot, role: str, tenant: str, resource: str, action: str
) -> None:
    # A role carried by the token acts like the role itself making the request.
    oracle = casbin_enforcer(snap)
    index = CompiledPolicy(snap)
    expected = oracle.enforce(ROLE_PREFIX + role, tenant, resource, action)
    got = index.decide("nobody-assigned", (role,), tenant, resource, action, NOW)
    assert got.allowed == expected


@settings(max_examples=150, deadline=None)
@given(
    snapshots(),
    st.lists(st.builds(Grant, ROLES, RESOURCES, ACTIONS, TENANTS), max_size=5),
    SUBJECTS,
    TENANTS,
    RESOURCES,
    ACTIONS,
)
def test_incremental_changes_equal_a_full_rebuild(
    snap: Snapshot, extra: list[Grant], subject: str, tenant: str, resource: str, action: str
) -> None:
    index = CompiledPolicy(snap)
    for g in extra:
        index.add_grant(g)
    removed = snap.grants[: len(snap.grants) // 2]
    for g in removed:
        index.remove_grant(g)
    # Additions first, then removals: a grant in both ends up removed.
    expected_grants = (set(snap.grants) | set(extra)) - set(removed)
    rebuilt = CompiledPolicy(Snapshot(1, list(expected_grants), snap.assignments, snap.inheritance))
    assert set(index.grants()) == set(rebuilt.grants()) == expected_grants
    a = index.decide(subject, (), tenant, resource, action, NOW).allowed
    b = rebuilt.decide(subject, (), tenant, resource, action, NOW).allowed
    assert a == b
