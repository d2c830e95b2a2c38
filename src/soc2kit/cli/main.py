"""``soc2kit`` commands. Errors print one line and exit non-zero; ``--debug`` shows tracebacks."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from typer.exceptions import TyperException

from soc2kit._version import __version__
from soc2kit.cli.apikeys import apikeys_app
from soc2kit.cli.new import new as new_command
from soc2kit.cli.routes import routes as routes_command
from soc2kit.errors import ConfigurationError, InsecureConfigurationError, Soc2kitError

app = typer.Typer(
    name="soc2kit",
    help="Secure-by-default controls for FastAPI services that must pass a SOC 2 audit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="soc2kit's own database tables.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apikeys_app, name="apikeys")


def _register_subcommands() -> None:
    from soc2kit.cli.access import policy_app, principals_app, review_app
    from soc2kit.cli.audit import audit_app
    from soc2kit.cli.crypto import encryption_app, keys_app

    app.add_typer(policy_app, name="policy")
    app.add_typer(principals_app, name="principals")
    app.add_typer(review_app, name="access-review")
    app.add_typer(keys_app, name="keys")
    app.add_typer(encryption_app, name="encryption")
    app.add_typer(audit_app, name="audit")


_register_subcommands()

out = Console()
err = Console(stderr=True, soft_wrap=True)


class _State:
    debug = False


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _State.debug = debug


@app.command()
def version() -> None:
    """Print the soc2kit version."""
    out.print(__version__)


@app.command()
def check(
    app_ref: Annotated[str, typer.Option("--app", help="The application, as module:attribute.")],
) -> None:
    """Check an app's configuration against the production guard; exit 1 on any problem."""
    from soc2kit.cli.loader import load_object
    from soc2kit.settings import Settings, production_problems

    try:
        target = load_object(app_ref)
    except InsecureConfigurationError as exc:
        # install() in production already refused: these are the problems.
        _print_problems(list(exc.problems), "production")
        raise typer.Exit(1) from None
    kit = getattr(getattr(target, "state", None), "soc2kit", None)
    if kit is None:
        settings = Settings()
        problems = ["soc2kit.install(app) was not called on this app"]
    else:
        settings = kit.settings
        problems = []
    problems += production_problems(settings, target)
    from soc2kit.crypto.orm import expired_plaintext_windows

    problems += [
        f"plaintext migration window has ended: {column}" for column in expired_plaintext_windows()
    ]
    _print_problems(problems, settings.environment)
    raise typer.Exit(1 if problems else 0)


def _print_problems(problems: list[str], environment: str) -> None:
    if not problems:
        out.print(
            f"[green]no problems[/green]: the configuration passes the production guard "
            f"(environment: {environment})"
        )
        return
    table = Table(
        title=f"Production guard: {len(problems)} problem(s) (environment: {environment})"
    )
    table.add_column("#", justify="right")
    table.add_column("problem")
    for i, problem in enumerate(problems, 1):
        table.add_row(str(i), problem)
    out.print(table)


@db_app.command("upgrade")
def db_upgrade(
    database_url: Annotated[
        str | None, typer.Option(help="Defaults to SOC2KIT_DATABASE_URL / the settings default.")
    ] = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate soc2kit's tables (Alembic)."""
    from soc2kit import db
    from soc2kit.settings import Settings

    url = database_url or Settings().database_url
    engine = db.create_engine(url)
    try:
        db.upgrade(engine, revision)
        out.print(f"soc2kit tables at revision {db.current_revision(engine)}")
    finally:
        engine.dispose()


@app.command("dev-token")
def dev_token(
    sub: Annotated[str, typer.Option("--sub", help="Subject (the token's sub claim).")],
    role: Annotated[list[str] | None, typer.Option("--role", help="A role; repeatable.")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.", min=60, max=86400)] = 3600,
    tenant: Annotated[str | None, typer.Option(help="Tenant claim.")] = None,
) -> None:
    """Sign a development token (refused in production or when real keys are configured)."""
    from soc2kit.authn.tokens import TokenVerifier
    from soc2kit.settings import Settings

    settings = Settings()
    if settings.is_production:
        raise ConfigurationError("dev-token is refused in production")
    verifier = TokenVerifier(settings)
    out.print(
        verifier.mint_dev_token(sub, role or [], ttl_seconds=ttl, tenant=tenant), soft_wrap=True
    )


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo service is baked (replaced).")
    ] = Path("demo-service"),
    install: Annotated[
        bool, typer.Option("--install/--no-install", help="pip install the baked service.")
    ] = True,
) -> None:
    """Bake a service from the template, generate its control documents, and serve it."""
    from soc2kit.cli.demo import run_demo

    run_demo(directory, host, port, out, install=install)


app.command("routes")(routes_command)
app.command("new")(new_command)


def _register_documents() -> None:
    from soc2kit.cli.controls import controls, evidence

    app.command("controls")(controls)
    app.command("evidence")(evidence)


_register_documents()


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line on error, a traceback only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # With standalone_mode=False click *returns* typer.Exit's code instead of
        # raising it; dropping it would turn `check`'s failure into exit 0.
        code = app(args=args, standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except TyperException as exc:
        # typer bundles its own click: its usage errors are not click's classes.
        formatter = getattr(exc, "format_message", None)
        message = formatter() if callable(formatter) else str(exc)
        err.print(f"error: {message}", markup=False, highlight=False)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        if debug:
            raise
        sys.exit(_report(exc))


def _report(exc: BaseException) -> int:
    if isinstance(exc, InsecureConfigurationError):
        err.print(
            f"error: {exc.problems[0]} (and {len(exc.problems) - 1} more; run soc2kit check)"
            if len(exc.problems) > 1
            else f"error: {exc.problems[0]}",
            markup=False,
            highlight=False,
        )
        return 1
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        err.print(
            f"error: invalid setting {where}: {first.get('msg', 'invalid')}",
            markup=False,
            highlight=False,
        )
        return 2
    if isinstance(exc, Soc2kitError):
        # Plain text: messages name things like [tool.soc2kit] that rich would eat as markup.
        err.print(f"error: {str(exc).splitlines()[0]}", markup=False, highlight=False)
        return 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, OperationalError):
        err.print("error: the database is unreachable or refused the operation")
        return 1
    logging.getLogger("soc2kit.cli").debug("unexpected error", exc_info=exc)
    err.print(f"error: unexpected {type(exc).__name__} (run with --debug for details)")
    return 1
