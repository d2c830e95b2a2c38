"""After the bake: a development ``.env``, development keys and the control documents.

Cookiecutter runs this in the new project's folder with its own Python. Keys
and documents need soc2kit in that Python; without it, one line says what to
run instead, and the bake still succeeds (soc2kit creates the keys on first
start anyway). Nothing written here is a production secret: development keys
are refused in production.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONTEXT_JSON = r"""{{ cookiecutter | tojson }}"""

DATA_DIR = ".soc2kit"
CONTROLS_DIR = "docs/controls"
ENV_HEADER = (
    "# Development settings, written when the project was generated. Git-ignored;\n"
    "# no secrets: development keys live in .soc2kit/ and are refused in production.\n"
)


# Files that exist only for some options (cookiecutter has no conditional
# files): path -> the condition under which the file is kept.
CONDITIONAL_FILES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "tests/test_tenancy.py": lambda context: context["tenancy"] == "multi",
}


def remove_unused(project: Path, context: dict[str, Any]) -> list[str]:
    """Delete the files whose option is off; returns their paths."""
    removed = []
    for name, keep in CONDITIONAL_FILES.items():
        if not keep(context):
            (project / name).unlink(missing_ok=True)
            removed.append(name)
    return removed


def write_env(project: Path) -> Path:
    """``.env`` for development: ``.env.example``'s values, created 0600, never overwritten."""
    target = project / ".env"
    body = ENV_HEADER + (project / ".env.example").read_text("utf-8")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return target
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    return target


def soc2kit_available() -> bool:
    return importlib.util.find_spec("soc2kit") is not None


def make_dev_keys(project: Path, service_name: str) -> list[str]:
    """soc2kit's development keys in ``.soc2kit/``: the files it would create on first start.

    Created by soc2kit's own functions, so their format is always the one the
    installed soc2kit reads (token signing key, field-encryption KEK, audit
    checkpoint signing key; each 0600).
    """
    from soc2kit.audit.checkpoints import Signer
    from soc2kit.authn import devkeys
    from soc2kit.crypto.providers import LocalKeyProvider
    from soc2kit.settings import Settings

    data_dir = project / DATA_DIR
    settings = Settings(  # keyword arguments win over the caller's SOC2KIT_* variables
        environment="development",
        data_dir=data_dir,
        service_name=service_name,
        _env_file=None,
    )
    devkeys.load_or_create(settings)
    LocalKeyProvider.development(data_dir)
    Signer.development_key(data_dir, service_name)
    return sorted(p.name for p in data_dir.iterdir() if p.is_file())


def controls_env(scratch: Path, service_name: str) -> dict[str, str]:
    """The development configuration on a throwaway key folder and database.

    The same recipe as ``make controls`` (the Makefile's ``throwaway``), so
    ``make controls-check`` in CI, in a clone without the git-ignored ``.env``,
    compares like with like; the bake leaves no database behind.
    """
    return {
        "SOC2KIT_ENVIRONMENT": "development",
        "SOC2KIT_SERVICE_NAME": service_name,
        "SOC2KIT_DATA_DIR": str(scratch / "data"),
        "SOC2KIT_DATABASE_URL": f"sqlite:///{scratch / 'controls.db'}",
    }


def generate_controls(project: Path, package: str, service_name: str) -> str | None:
    """Write docs/controls as ``soc2kit controls`` does; None when done, else why not.

    In this process, which has imported soc2kit for the keys already: a second
    interpreter would double the bake time. The caller's own SOC2KIT_*
    variables are set aside for the duration, so they cannot leak into the
    committed documents.
    """
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="soc2kit-bake-") as scratch:
        for name in [k for k in os.environ if k.startswith("SOC2KIT_")]:
            del os.environ[name]
        os.environ.update(controls_env(Path(scratch), service_name))
        sys.path.insert(0, str(project))
        # Importing the app must not leave __pycache__ folders in the new project.
        write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        try:
            from soc2kit.cli.loader import load_object
            from soc2kit.controls.generate import collect, parse_scope, project_config, write

            ref = f"{package}.app:app"
            scope = parse_scope(project_config(project).get("trust_criteria", []))
            write(collect(load_object(ref), app_ref=ref, scope=scope), project / CONTROLS_DIR)
        except Exception as exc:  # the documents are regenerated by `make controls`
            first = str(exc).splitlines()[0] if str(exc) else ""
            return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        finally:
            sys.dont_write_bytecode = write_bytecode
            sys.path.remove(str(project))
            os.environ.clear()
            os.environ.update(saved)
    return None


def main() -> int:
    context: dict[str, Any] = json.loads(CONTEXT_JSON)
    project = Path.cwd()
    package, slug = context["package_name"], context["project_slug"]
    remove_unused(project, context)
    write_env(project)
    if not soc2kit_available():
        print(
            "note: soc2kit is not installed in this Python: after `make install`, run "
            "`make controls` to generate docs/controls (keys are created on first start)"
        )
    else:
        try:
            make_dev_keys(project, slug)
        except Exception as exc:  # the keys are a convenience: soc2kit makes them on first start
            print(
                f"note: development keys not generated now ({type(exc).__name__}); "
                "soc2kit creates them on first start"
            )
        if importlib.util.find_spec("soc2kit.cli.controls") is None:
            print(
                "note: this soc2kit has no `controls` command: upgrade it, then run `make controls`"
            )
        else:
            failure = generate_controls(project, package, slug)
            if failure is not None:
                print(f"warning: control documents not generated ({failure}); run `make controls`")
    print(
        f"\n{slug} is ready. In its folder:\n"
        "  make run    # http://127.0.0.1:8000 with development keys\n"
        "  make test   # ruff, mypy and pytest"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
