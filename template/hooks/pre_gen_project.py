"""Refuse options that would not make a valid, secure service, before any file is written.

Cookiecutter limits choice variables to their choices when it prompts, but a
replay file or extra context can carry anything, so every value is checked
here and every problem is reported in one line. ``soc2kit new`` runs
``problems()`` itself before baking, so both entry points share these rules.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from typing import Any

# Rendered by cookiecutter as the JSON of the whole context (a raw string: JSON
# escapes every quote and never ends in a backslash). Unrendered, the module
# still imports, which is how the unit tests and ``soc2kit new`` load it.
CONTEXT_JSON = r"""{{ cookiecutter | tojson }}"""

CHOICES: dict[str, tuple[str, ...]] = {
    "database": ("sqlite", "postgresql"),
    "tenancy": ("single", "multi"),
    "key_provider": ("local", "aws-kms"),
}
CRITERIA = ("availability", "confidentiality", "processing_integrity", "privacy")
TEXT_LIMITS = {"project_name": 80, "description": 200}

SLUG = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
PACKAGE = re.compile(r"[a-z][a-z0-9_]*")
# Names the generated service already uses, or that would shadow what it imports.
RESERVED_PACKAGES = frozenset(
    [
        "soc2kit",
        "tests",
        "test",
        "migrations",
        "alembic",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "pydantic",
        "pydantic_settings",
        "uvicorn",
        "docs",
        "policy",
        "deploy",
        "scripts",
    ]
)
# Quotes, backslashes, braces and backticks would break the generated Python,
# TOML, YAML or Markdown, or read as template syntax.
FORBIDDEN_TEXT = set('"\\{}`$')


def _text_problem(name: str, value: Any) -> str | None:
    limit = TEXT_LIMITS[name]
    if not isinstance(value, str) or not value.strip():
        return f"{name} must not be empty"
    if len(value) > limit:
        return f"{name} is longer than {limit} characters"
    if not value.isprintable() or FORBIDDEN_TEXT & set(value):
        return f"{name} may not contain quotes, backslashes, braces, '`', '$' or control characters"
    return None


def problems(context: dict[str, Any]) -> list[str]:
    """Every reason ``context`` (cookiecutter's answers) cannot be baked; empty when fine."""
    found: list[str] = []
    for name in TEXT_LIMITS:
        problem = _text_problem(name, context.get(name))
        if problem:
            found.append(problem)
    slug = context.get("project_slug")
    if not isinstance(slug, str) or not SLUG.fullmatch(slug) or not 2 <= len(slug) <= 40:
        found.append(
            f"project_slug {slug!r} must be 2-40 lowercase letters, digits and single '-', "
            "starting with a letter"
        )
    package = context.get("package_name")
    if (
        not isinstance(package, str)
        or not PACKAGE.fullmatch(package)
        or not 2 <= len(package) <= 40
    ):
        found.append(
            f"package_name {package!r} must be 2-40 lowercase letters, digits and '_', "
            "starting with a letter"
        )
    elif keyword.iskeyword(package) or package in RESERVED_PACKAGES:
        found.append(f"package_name {package!r} is reserved: choose another name")
    elif package in sys.stdlib_module_names:
        found.append(f"package_name {package!r} would shadow the standard library module")
    for name, allowed in CHOICES.items():
        value = context.get(name)
        if value not in allowed:
            found.append(f"{name} {value!r} is not one of {', '.join(allowed)}")
    for name in CRITERIA:
        value = context.get(name)
        if not isinstance(value, bool):
            found.append(f"{name} {value!r} must be a yes/no (boolean) answer")
    return found


def main() -> int:
    found = problems(json.loads(CONTEXT_JSON))
    if found:
        sys.stderr.write("error: " + "; ".join(found) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
