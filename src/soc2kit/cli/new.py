"""``soc2kit new``: a new service from soc2kit's cookiecutter template.

The template ships inside the wheel as ``soc2kit/_template`` (pyproject's
``force-include``), so this works from a plain ``pip install soc2kit``; in a
source checkout (an editable install) it is read from the repository's
``template/``. Options are checked by the template's own pre-generation hook
(``problems()``), loaded here so that both entry points share one set of rules.
"""

from __future__ import annotations

import os
import runpy
import shutil
import tempfile
from collections.abc import Callable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

PACKAGED = "_template"
"""The template's folder inside the installed package (cookiecutter.json and template/)."""
TEMPLATE = "template"
"""The cookiecutter template itself, beside the top-level cookiecutter.json."""


class UsageProblem(Exception):
    """Options or a target that cannot be baked: one line, exit 2."""


def _has_template(root: Traversable | Path) -> bool:
    return (root / TEMPLATE / "cookiecutter.json").is_file()


def find_template(packaged: Traversable | Path | None = None, checkout: Path | None = None) -> Path:
    """The folder holding ``cookiecutter.json`` and ``template/``: the installed copy first.

    ``packaged`` and ``checkout`` default to the copy inside the soc2kit package
    and to the repository around this source file (an editable install).
    """
    if packaged is None:
        packaged = resources.files("soc2kit") / PACKAGED
    if checkout is None:
        checkout = Path(__file__).resolve().parents[3]
    # A wheel installed on disk gives a real path; cookiecutter needs one.
    if isinstance(packaged, Path) and _has_template(packaged):
        return packaged
    if _has_template(checkout):
        return checkout
    raise UsageProblem(
        "the service template is missing from this soc2kit installation (reinstall soc2kit)"
    )


def parse_options(items: list[str]) -> dict[str, str]:
    """``key=value`` strings as a dict (the last value of a repeated key wins)."""
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageProblem(f"--option expects key=value, got {item!r}")
        options[key.strip()] = value
    return options


def _hook_problems(template: Path) -> Callable[[dict[str, Any]], list[str]]:
    # The hook file is valid Python before rendering; its checks are the template's.
    namespace = runpy.run_path(str(template / "hooks" / "pre_gen_project.py"))
    check: Callable[[dict[str, Any]], list[str]] = namespace["problems"]
    return check


def resolve_answers(template: Path, options: dict[str, str]) -> dict[str, Any]:
    """Cookiecutter's answers for ``--no-input`` with ``options``; UsageProblem if invalid."""
    from cookiecutter.generate import generate_context  # type: ignore[import-untyped]
    from cookiecutter.prompt import prompt_for_config  # type: ignore[import-untyped]

    context_file = template / "cookiecutter.json"
    known = generate_context(context_file=str(context_file))["cookiecutter"]
    public = sorted(k for k in known if not k.startswith("_"))
    unknown = sorted(k for k in options if k not in public)
    if unknown:
        raise UsageProblem(
            f"unknown option {', '.join(map(repr, unknown))} (options: {', '.join(public)})"
        )
    try:
        context = generate_context(context_file=str(context_file), extra_context=options)
    except ValueError as exc:  # a choice or yes/no value cookiecutter cannot take
        raise UsageProblem(str(exc)) from None
    answers: dict[str, Any] = prompt_for_config(context, no_input=True)
    problems = _hook_problems(template)(answers)
    if problems:
        raise UsageProblem("; ".join(problems))
    return answers


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise UsageProblem(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise UsageProblem(f"{target} exists and is not empty (use --overwrite to replace it)")
    resolved, here = target.resolve(), Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        # The service is moved into place at the end: never over the folder we stand in.
        raise UsageProblem(f"{target} is the current folder or holds it: name a new folder")
    if overwrite and resolved == Path.home():
        raise UsageProblem("refusing to overwrite the home folder")


def bake(
    target: Path,
    options: dict[str, str],
    *,
    no_input: bool = True,
    overwrite: bool = False,
    root: Path | None = None,
) -> Path:
    """Generate the service into ``target`` and return it (see the ``new`` command)."""
    from cookiecutter.exceptions import (  # type: ignore[import-untyped]
        CookiecutterException,
        FailedHookException,
    )
    from cookiecutter.main import cookiecutter  # type: ignore[import-untyped]

    target = Path(target)
    _check_target(target, overwrite)
    template = (root or find_template()) / TEMPLATE
    if not {"project_name", "project_slug", "package_name"} & options.keys():
        options = {**options, "project_name": target.resolve().name}
    if no_input:
        resolve_answers(template, options)
    target.resolve().parent.mkdir(parents=True, exist_ok=True)
    # Baked next to the target, then moved into place: a failed bake leaves nothing.
    staging = Path(tempfile.mkdtemp(prefix=".soc2kit-new-", dir=target.resolve().parent))
    try:
        config = staging / "cookiecutter-config.yaml"
        # soc2kit's own config: no ~/.cookiecutterrc defaults, no replay written to $HOME.
        config.write_text(f"replay_dir: {str(staging / 'replay')!r}\n", "utf-8")
        try:
            baked = cookiecutter(
                str(template),
                no_input=no_input,
                extra_context=options,
                output_dir=str(staging / "out"),
                config_file=str(config),
            )
        except FailedHookException:
            raise UsageProblem("the template refused these options (see the line above)") from None
        except ValueError as exc:
            raise UsageProblem(str(exc)) from None
        except CookiecutterException as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageProblem(first) from None
        if target.exists():
            shutil.rmtree(target)
        os.replace(baked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def new(
    target: Annotated[Path, typer.Argument(help="Folder for the new service.")],
    no_input: Annotated[
        bool, typer.Option("--no-input", help="Ask nothing: defaults plus --option values.")
    ] = False,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="key=value, repeatable: project_name, database=sqlite|postgresql, "
            "tenancy=single|multi, key_provider=local|aws-kms, privacy=yes, ...",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace TARGET when it exists and is not empty.")
    ] = False,
) -> None:
    """Generate a new service from soc2kit's template; exit 2 on invalid options."""
    try:
        baked = bake(target, parse_options(option or []), no_input=no_input, overwrite=overwrite)
    except UsageProblem as exc:
        Console(stderr=True, soft_wrap=True, highlight=False).print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    typer.echo(f"created {baked}")
