"""The access policy as a reviewed file: policy/policy.csv is the truth for role grants.

At start-up the file's grants are applied and any grant missing from it is
revoked, each change with its own audit event, so what runs is what was
reviewed. Who holds which role comes from the identity provider's ``roles``
claim (or ``kit.policy.assign`` / ``soc2kit policy``), not from this file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import NamedTuple

from soc2kit import Kit

ROLE_PREFIX = "role:"

# Separation of duties: no one may hold both roles of a pair (checked by
# soc2kit at every assignment). Changes here are reviewed like the CSV.
CONFLICTS = (("admin", "auditor", "who administers the service may not audit it"),)


class Grant(NamedTuple):
    role: str
    tenant: str
    resource: str
    action: str


def read_grants(text: str) -> set[Grant]:
    """The grants (``p, role:R, tenant, resource, action``) of a policy file."""
    grants: set[Grant] = set()
    for lineno, row in enumerate(csv.reader(io.StringIO(text), skipinitialspace=True), 1):
        cells = [cell.strip() for cell in row]
        if not cells or cells[0] != "p":  # comments, blank lines, assignments
            continue
        if len(cells) != 5 or not cells[1].startswith(ROLE_PREFIX):
            raise ValueError(f"line {lineno}: expected 'p, role:R, tenant, resource, action'")
        grants.add(Grant(cells[1][len(ROLE_PREFIX) :], cells[2], cells[3], cells[4]))
    return grants


def apply(kit: Kit, path: Path) -> None:
    """Make the stored policy's grants equal the file's; declare the role conflicts."""
    text = path.read_text("utf-8")
    reason = f"{path.name} applied at start-up"
    kit.policy.import_csv(text, actor="system", reason=reason)
    wanted = read_grants(text)
    for grant in kit.policy.grants():
        if Grant(grant.role, grant.tenant, grant.resource, grant.action) not in wanted:
            kit.policy.revoke(
                grant.role,
                grant.resource,
                grant.action,
                grant.tenant,
                actor="system",
                reason=f"not in {path.name}",
            )
    for role_a, role_b, why in CONFLICTS:
        kit.policy.declare_conflict(role_a, role_b, actor="system", reason=why)
