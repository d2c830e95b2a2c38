"""Refuse a slug or package name that would not make a valid project."""

import re
import sys

SLUG = "{{ cookiecutter.project_slug }}"
PACKAGE = "{{ cookiecutter.package_name }}"

if not re.fullmatch(r"[a-z][a-z0-9-]{1,62}", SLUG):
    sys.stderr.write(f"error: project_slug {SLUG!r} must be lowercase letters, digits and '-'\n")
    sys.exit(1)
if not re.fullmatch(r"[a-z][a-z0-9_]{1,62}", PACKAGE):
    sys.stderr.write(f"error: package_name {PACKAGE!r} is not a valid Python package name\n")
    sys.exit(1)
