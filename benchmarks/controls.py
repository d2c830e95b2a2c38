"""Control documents for a 500-route app, and baking the service template: issue 6's targets.

Targets: ``soc2kit controls`` for a generated app with 500 routes in at most
5 s; baking the template in at most 2 s.

1. **Control documents.** A generated app module (``bench_controls_app``) whose
   route inventory has exactly ``--routes`` entries: FastAPI's docs routes,
   ``kit.health_router()`` and, for the rest, a mix of ``require()`` routes
   (GET list, GET item, POST with a typed body, DELETE, over many resources)
   and one ``public()`` route in five; a few models with ``Encrypted`` columns
   (one with a blind index, one per-subject key scope) and a small policy
   applied with ``kit.policy.import_csv``.

   - *End to end*: ``python -m soc2kit controls --app bench_controls_app:app
     --out DIR`` in a subprocess, median of ``--repeats``, each on a fresh data
     folder and SQLite database (the CI case: migrations and development keys
     are created on the way), then ``--check`` against what it wrote, and a
     second generation on the same database.
   - *In-process split* (a fresh child process per repetition, so module and
     mapper state never leak between runs): importing the app module,
     ``collect()`` (the app's lifespan plus every evidence collector, each one
     timed) and ``write()`` (rendering and writing every file).

2. **Baking.** ``cookiecutter(str(repo), no_input=True, output_dir=tmp)`` in this
   process, median of ``--repeats`` (after one untimed bake), with the hooks
   (the real bake: pre-generation validation, then the post-generation hook's
   ``.env``, development keys and, if it does that, the control documents),
   and with ``accept_hooks=False`` (rendering only). The hooks' share (the
   post-generation hook's keys and control documents, generated in the hook's
   own process) is the difference of the two, per repetition.
   ``soc2kit new DIR --no-input`` is timed too when the command exists.

    .venv/bin/python benchmarks/controls.py [--quick] [--routes N] [--repeats R]
        [--write docs/performance.md]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

# The report helpers shared with the audit benchmark (machine note, command line,
# "median (min to max)", PASS/MISS); run as a script, benchmarks/ is on sys.path.
from bench_report import write_section

from audit import command_line, load, machine, spread, verdict, version

REPO = Path(__file__).resolve().parent.parent
CONTROLS_TARGET = 5.0  # seconds, `soc2kit controls` for an app with 500 routes
BAKE_TARGET = 2.0  # seconds, baking the template
MODULE = "bench_controls_app"
FULL = {"routes": 500, "repeats": 5}
QUICK = {"routes": 500, "repeats": 2}


# the generated app ----------------------------------------------------------------------
APP_SOURCE = '''\
"""A generated app for benchmarks/controls.py: {routes} routes in the inventory."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import soc2kit
from soc2kit import Principal, public, require
from soc2kit.authz import build_inventory
from soc2kit.crypto import BlindIndex, Encrypted, uuid7

TOTAL_ROUTES = {routes}


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "bench_customers"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    email: Mapped[str] = mapped_column(Encrypted(sa.String(320)))
    email_bidx: Mapped[bytes] = mapped_column(BlindIndex("email"), index=True)
    full_name: Mapped[str] = mapped_column(Encrypted(sa.String(200)))


class Patient(Base):
    __tablename__ = "bench_patients"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    subject: Mapped[str] = mapped_column(sa.String(64))
    diagnosis: Mapped[str] = mapped_column(Encrypted(sa.Text(), key_scope="subject"))


class Contract(Base):
    __tablename__ = "bench_contracts"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    terms: Mapped[str] = mapped_column(Encrypted(sa.Text()))
    iban: Mapped[str] = mapped_column(Encrypted(sa.String(64)))


class Item(BaseModel):
    name: str
    quantity: int = 1


settings = soc2kit.Settings()
app = FastAPI(title="controls benchmark", **settings.fastapi_docs_kwargs())
kit = soc2kit.install(app, settings)
app.include_router(kit.health_router())
Base.metadata.create_all(kit.engine)

RESOURCES = 40
kit.policy.import_csv(
    "\\n".join(
        line
        for r in range(RESOURCES)
        for line in (
            f"p, role:reader, *, res{{r}}, read",
            f"p, role:editor, *, res{{r}}, create",
            f"p, role:admin, *, res{{r}}, delete",
        )
    ),
    actor="system",
    reason="benchmark policy",
)


def _add(n: int) -> None:
    resource = f"res{{n % RESOURCES}}"
    kind = n % 5
    if kind == 4:

        @app.get(f"/public{{n}}", dependencies=[public("benchmark: a public page")])
        def page() -> dict[str, int]:
            return {{"n": n}}

    elif kind == 0:

        @app.get(f"/r{{n}}/items")
        def list_items(p: Principal = require(resource, "read")) -> list[Item]:
            return []

    elif kind == 1:

        @app.get(f"/r{{n}}/items/{{{{item_id}}}}")
        def read_item(item_id: int, p: Principal = require(resource, "read")) -> Item:
            return Item(name=str(item_id))

    elif kind == 2:

        @app.post(f"/r{{n}}/items", status_code=201)
        def create_item(body: Item, p: Principal = require(resource, "create")) -> Item:
            return body

    else:

        @app.delete(f"/r{{n}}/items/{{{{item_id}}}}", status_code=204)
        def delete_item(item_id: int, p: Principal = require(resource, "delete")) -> None:
            return None


# Inventory entries, not app.routes: an included router may stand for several routes.
for _n in range(TOTAL_ROUTES - len(build_inventory(app))):
    _add(_n)
'''


def write_app(folder: Path, routes: int) -> None:
    (folder / f"{MODULE}.py").write_text(APP_SOURCE.format(routes=routes), "utf-8")


def app_env(folder: Path, run: Path) -> dict[str, str]:
    """A development configuration on a data folder and SQLite database of this run."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])),
        "SOC2KIT_ENVIRONMENT": "development",
        "SOC2KIT_SERVICE_NAME": "controls-bench",
        "SOC2KIT_DATA_DIR": str(run / "data"),
        "SOC2KIT_DATABASE_URL": f"sqlite:///{run / 'app.db'}",
    }


def soc2kit_controls(folder: Path, run: Path, out: Path, *extra: str) -> float:
    """One ``soc2kit controls`` in a subprocess on ``run``'s database; seconds, wall clock."""
    argv = [sys.executable, "-m", "soc2kit", "controls", "--app", f"{MODULE}:app"]
    argv += ["--out", str(out), *extra]
    started = time.perf_counter()
    done = subprocess.run(
        argv, cwd=run, env=app_env(folder, run), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"soc2kit controls {' '.join(extra)} exited {done.returncode}:\n"
            f"{done.stdout}{done.stderr}"
        )
    return seconds


# in-process split (runs in a child: `controls.py --split FOLDER RUN`) ---------------------
def split_child(folder: Path, run: Path, spawned: float) -> dict[str, Any]:
    """Import, collect (each collector timed) and write, in this fresh process.

    ``spawned`` is the parent's ``time.time()`` just before it started this process.
    """
    # Interpreter start and this script's imports (soc2kit, SQLAlchemy, FastAPI).
    started_up = time.time() - spawned
    sys.path.insert(0, str(folder))
    started = time.perf_counter()
    import soc2kit.cli.main  # noqa: F401 - what `soc2kit controls` imports first (Typer, Rich)
    from soc2kit.controls import evidence
    from soc2kit.controls.generate import collect, write

    cli_imports = time.perf_counter() - started

    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

            return awrapper

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    # collect_all() looks its collectors up in the module at call time.
    for name in dir(evidence):
        if name.startswith("collect_") and name != "collect_all":
            setattr(evidence, name, timed(name.removeprefix("collect_"), getattr(evidence, name)))
    started = time.perf_counter()
    module: ModuleType = importlib.import_module(MODULE)
    imported = time.perf_counter() - started
    started = time.perf_counter()
    report = collect(module.app, app_ref=f"{MODULE}:app", scope=())
    collected = time.perf_counter() - started
    started = time.perf_counter()
    generated = write(report, run / "docs")
    written = time.perf_counter() - started
    routes = next(e for e in report.evidence if e.id == "routes").facts["routes"]
    return {
        "startup": started_up,
        "cli_imports": cli_imports,
        "import": imported,
        "collect": collected,
        "write": written,
        "collectors": timings,
        "routes": len(routes),
        "public": sum(1 for r in routes if str(r["access"]).startswith("public:")),
        "undeclared": sum(1 for r in routes if r["access"] == "UNDECLARED"),
        "encrypted_columns": len(
            next(e for e in report.evidence if e.id == "encryption").facts["columns"]
        ),
        "files": len(generated.files) + 1,
        "bytes": sum(p.stat().st_size for p in (run / "docs").rglob("*") if p.is_file()),
    }


def split_once(folder: Path, run: Path) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--split", str(folder), str(run), repr(time.time())],
        cwd=run,
        env=app_env(folder, run),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"in-process split failed:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - started  # spawn to exit, seen from here
    return result


@dataclass
class ControlsResult:
    cold: list[float] = field(default_factory=list)
    check: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    splits: list[dict[str, Any]] = field(default_factory=list)


def measure_controls(routes: int, repeats: int, workdir: Path) -> ControlsResult:
    folder = workdir / "app"
    folder.mkdir()
    write_app(folder, routes)
    result = ControlsResult()
    warmup = fresh(workdir, "warmup")  # fills the OS file cache, writes .pyc files
    soc2kit_controls(folder, warmup, warmup / "docs")
    for rep in range(repeats):
        run = fresh(workdir, f"e2e-{rep}")
        docs = run / "docs"
        result.cold.append(soc2kit_controls(folder, run, docs))
        # As CI runs it (the template's `make controls-check`): a throwaway database.
        result.check.append(
            soc2kit_controls(folder, fresh(workdir, f"check-{rep}"), docs, "--check")
        )
        result.warm.append(soc2kit_controls(folder, run, run / "again"))
        result.splits.append(split_once(folder, fresh(workdir, f"split-{rep}")))
        progress(
            f"  controls {rep + 1}/{repeats}: end to end {result.cold[-1]:.2f} s "
            f"(--check {result.check[-1]:.2f} s, again {result.warm[-1]:.2f} s); in-process "
            f"import {result.splits[-1]['import']:.2f} s, collect "
            f"{result.splits[-1]['collect']:.2f} s, write {result.splits[-1]['write']:.2f} s"
        )
    first = result.splits[0]
    if first["routes"] != routes or first["undeclared"]:
        raise SystemExit(f"the generated app has {first['routes']} routes, expected {routes}")
    return result


def fresh(workdir: Path, name: str) -> Path:
    run = workdir / name
    run.mkdir()
    return run


# baking ---------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence this process's stdout and stderr, the hook subprocesses' included."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def bake(out: Path, *, hooks: bool = True) -> tuple[float, Path]:
    from cookiecutter.main import cookiecutter

    out.mkdir()
    # Like soc2kit new: no ~/.cookiecutterrc defaults, no replay file written to $HOME.
    config = out / "cookiecutter-config.yaml"
    config.write_text(f"replay_dir: {str(out / 'replay')!r}\n", "utf-8")
    started = time.perf_counter()
    with quiet():
        project = cookiecutter(
            str(REPO),
            no_input=True,
            output_dir=str(out),
            accept_hooks=hooks,
            config_file=str(config),
        )
    return time.perf_counter() - started, Path(project)


def post_gen_hook() -> ModuleType | None:
    """The template's post-generation hook as a module (it imports unrendered)."""
    path = REPO / "template" / "hooks" / "post_gen_project.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("bench_post_gen_project", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class BakeResult:
    full: list[float] = field(default_factory=list)
    render: list[float] = field(default_factory=list)
    controls_step: list[float] = field(default_factory=list)
    new: list[float] = field(default_factory=list)
    hook_generates_controls: bool = False
    generated_controls: bool = False
    files: int = 0
    new_available: bool = False


def soc2kit_new_available() -> bool:
    return importlib.util.find_spec("soc2kit.cli.new") is not None


def measure_bake(repeats: int, workdir: Path) -> BakeResult:
    result = BakeResult()
    hook = post_gen_hook()
    result.hook_generates_controls = hook is not None and hasattr(hook, "generate_controls")
    result.new_available = soc2kit_new_available()
    _, project = bake(workdir / "bake-warmup")  # imports cookiecutter, jinja2; fills caches
    result.generated_controls = (project / "docs" / "controls" / "manifest.json").is_file()
    result.files = sum(1 for p in project.rglob("*") if p.is_file())
    for rep in range(repeats):
        seconds, _ = bake(workdir / f"bake-{rep}")
        result.full.append(seconds)
        seconds, _ = bake(workdir / f"render-{rep}", hooks=False)
        result.render.append(seconds)
        if hook is not None and result.hook_generates_controls:
            # The hook generates the documents in its own process (it imports the baked
            # app, which one process can do once): its cost is the difference of the
            # two bakes of this repetition.
            result.controls_step.append(result.full[-1] - result.render[-1])
        if result.new_available:
            target = workdir / f"new-{rep}" / "service"
            target.parent.mkdir()
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "soc2kit", "new", str(target), "--no-input"],
                capture_output=True,
                text=True,
                check=False,
            )
            result.new.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(f"soc2kit new failed:\n{done.stdout}{done.stderr}")
        progress(
            f"  bake {rep + 1}/{repeats}: with hooks {result.full[-1]:.2f} s, render only "
            f"{result.render[-1]:.2f} s"
            + (
                f", the hook's control documents alone {result.controls_step[-1]:.2f} s"
                if result.controls_step
                else ""
            )
            + (f", soc2kit new {result.new[-1]:.2f} s" if result.new else "")
        )
    return result


# report ---------------------------------------------------------------------------------
def med(values: list[float]) -> float:
    return statistics.median(values)


def render(
    c: ControlsResult, b: BakeResult, args: argparse.Namespace, load_before: str, minutes: float
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    split = c.splits[0]
    startups = [s["startup"] for s in c.splits]
    cli_imports = [s["cli_imports"] for s in c.splits]
    imports = [s["import"] for s in c.splits]
    collects = [s["collect"] for s in c.splits]
    writes = [s["write"] for s in c.splits]
    totals = [
        s["startup"] + s["cli_imports"] + s["import"] + s["collect"] + s["write"] for s in c.splits
    ]
    names = sorted({n for s in c.splits for n in s["collectors"]})
    per = {n: [s["collectors"].get(n, 0.0) for s in c.splits] for n in names}
    # The app's start-up and shutdown around the collectors.
    lifespan = [s["collect"] - sum(s["collectors"].values()) for s in c.splits]
    ok_controls = med(c.cold) <= CONTROLS_TARGET
    ok_bake = med(b.full) <= BAKE_TARGET
    out = [
        "## Control documents and the service template",
        "",
        f"Measured {when} with:",
        "",
        "```sh",
        command_line(),
        "```",
        "",
        machine(load_before),
        f"- FastAPI {version('fastapi')}, cookiecutter {version('cookiecutter')}, "
        f"Jinja2 {version('jinja2')}. The whole run took {minutes:.1f} min; "
        f"{args.repeats} repetitions of every measurement, figures are medians (min to max).",
        "",
        "### `soc2kit controls` for an app with 500 routes",
        "",
        f"The app (generated by the benchmark) has {split['routes']} routes in its inventory: "
        f"{split['routes'] - split['public']} behind `require()` (list, read, create with a "
        f"typed body, delete, over 40 resources) and {split['public']} `public()` (FastAPI's "
        "docs routes, `/healthz`, `/readyz` and one generated route in five), none undeclared; "
        f"{split['encrypted_columns']} `Encrypted` columns in 3 models (a blind index, a "
        "per-subject key scope) and 120 grants. Each end-to-end run is "
        f"`python -m soc2kit controls --app {MODULE}:app --out DIR` in a subprocess on a "
        "fresh data folder and SQLite database (so soc2kit's migrations and development keys "
        f"are created on the way, as in CI); it writes {split['files']} files "
        f"({split['bytes'] / 1024:,.0f} KiB).",
        "",
        "| run | seconds | vs target 5 s |",
        "|---|---:|---:|",
        f"| `soc2kit controls` (fresh database) | {spread(c.cold, '.2f')} "
        f"| {med(c.cold) / CONTROLS_TARGET:.2f}x |",
        f"| `soc2kit controls --check` of those documents, on another fresh database "
        f"| {spread(c.check, '.2f')} "
        f"| {med(c.check) / CONTROLS_TARGET:.2f}x |",
        f"| `soc2kit controls` again, same database | {spread(c.warm, '.2f')} "
        f"| {med(c.warm) / CONTROLS_TARGET:.2f}x |",
        "",
        f"- **`soc2kit controls`, 500 routes: {med(c.cold):.2f} s** median, "
        f"{med(c.cold) / CONTROLS_TARGET:.2f} of the 5 s target: {verdict(ok_controls)}.",
        "",
        "Where the time goes, in process (a fresh child process per repetition; "
        "`generate.collect()` and `generate.write()` as the command calls them):",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| interpreter start, imports of soc2kit, SQLAlchemy, FastAPI "
        f"| {spread(startups, '.3f')} |",
        f"| imports of the CLI (Typer, Rich, the commands) and the generator "
        f"| {spread(cli_imports, '.3f')} |",
        f"| import the app module (soc2kit, FastAPI, `install()`, tables, policy, 500 routes) "
        f"| {spread(imports, '.3f')} |",
        f"| `collect()`: every evidence collector, inside the app's lifespan "
        f"| {spread(collects, '.3f')} |",
        *[
            f"| &nbsp;&nbsp;collector `{n}` | {spread(per[n], '.3f')} |"
            for n in sorted(names, key=lambda n: -med(per[n]))
        ],
        f"| &nbsp;&nbsp;lifespan start-up and shutdown around them | {spread(lifespan, '.3f')} |",
        f"| `write()`: render Markdown, HTML, OSCAL and evidence, hash, write "
        f"| {spread(writes, '.3f')} |",
        f"| total of the steps above | {spread(totals, '.3f')} |",
        f"| the child process from spawn to exit, seen by the parent (the steps plus "
        f"interpreter shutdown) | {spread([s['wall'] for s in c.splits], '.3f')} |",
        "",
        "### Baking the template",
        "",
        f"`cookiecutter(str(repo), no_input=True, output_dir=tmp, config_file=...)` (a "
        "config file that only moves the replay file into the temporary folder) in this "
        "process, one untimed bake first so that cookiecutter and Jinja2 are imported; a bake "
        "writes "
        f"{b.files} files. The hooks run as cookiecutter runs them, each in a subprocess "
        "of this Python, which has soc2kit installed.",
        "",
        "| bake | seconds | vs target 2 s |",
        "|---|---:|---:|",
        f"| with the hooks: the real bake | {spread(b.full, '.2f')} "
        f"| {med(b.full) / BAKE_TARGET:.2f}x |",
        f"| rendering only (`accept_hooks=False`) | {spread(b.render, '.2f')} "
        f"| {med(b.render) / BAKE_TARGET:.2f}x |",
    ]
    if b.controls_step:
        out += [
            f"| the hooks' share: keys and control documents, in the hook's process "
            f"(with hooks less rendering only, per repetition) "
            f"| {spread(b.controls_step, '.2f')} | |",
        ]
    if b.new:
        out.append(
            f"| `soc2kit new DIR --no-input` (subprocess) | {spread(b.new, '.2f')} "
            f"| {med(b.new) / BAKE_TARGET:.2f}x |"
        )
    out += [
        "",
        f"- **Baking the template: {med(b.full):.2f} s** median with the hooks, "
        f"{med(b.full) / BAKE_TARGET:.2f} of the 2 s target: {verdict(ok_bake)}.",
    ]
    if b.hook_generates_controls and b.controls_step:
        out.append(
            "- The post-generation hook writes `.env`, the development keys and the control "
            "documents (`docs/controls/` "
            + ("was written" if b.generated_controls else "was NOT written")
            + ") "
            f"in its own process: {med(b.controls_step):.2f} s, "
            f"{med(b.controls_step) / med(b.full):.0%} of the bake's median."
        )
        out.append(
            "- Rendering is cheap; the time is in the hooks' processes. The pre-generation hook "
            "is one Python process; the post-generation hook is another, which imports soc2kit "
            "to write the development keys, then imports the new service and generates its "
            "control documents in the same process (one interpreter start and one import of "
            "soc2kit for both)."
        )
    elif not b.hook_generates_controls:
        out.append("- The post-generation hook does not generate control documents.")
    if not b.new_available:
        out.append("- `soc2kit new` did not exist when this was measured.")
    if b.new:
        out.append(
            "- `soc2kit new` is timed as a user runs it: its own interpreter start and "
            "imports, its option check (the template's pre-generation rules, before baking), "
            "then the same bake with the same hooks."
        )
    out += [
        "- A bake from the command line (`cookiecutter <repo> --no-input`) adds an "
        "interpreter start and cookiecutter's imports to the in-process figures.",
        "",
    ]
    return "\n".join(out)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, a quick check")
    parser.add_argument("--routes", type=int, help="routes in the generated app's inventory (500)")
    parser.add_argument("--repeats", type=int, help="repetitions of every measurement (5)")
    parser.add_argument("--write", type=Path, help="update this Markdown file's controls section")
    parser.add_argument("--split", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.routes < 10 or args.repeats < 1:
        parser.error("--routes must be at least 10 and --repeats at least 1")
    return args


def main() -> None:
    args = parse_args()
    if args.split:
        folder, run, spawned = args.split
        print(json.dumps(split_child(Path(folder), Path(run), float(spawned))))
        return
    load_before = load()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="soc2kit-bench-controls-") as tmp:
        workdir = Path(tmp)
        progress(f"soc2kit controls, {args.routes} routes, {args.repeats} repetitions")
        controls = measure_controls(args.routes, args.repeats, workdir)
        progress("baking the template")
        bakes = measure_bake(args.repeats, workdir)
    text = render(controls, bakes, args, load_before, (time.perf_counter() - began) / 60)
    print(text)
    if args.write:
        write_section(args.write, "controls", text)
        progress(f"wrote {args.write}")


if __name__ == "__main__":
    main()
