"""{{ cookiecutter.project_name }}: {{ cookiecutter.description }}."""

from __future__ import annotations

from fastapi import FastAPI

import soc2kit
from soc2kit import Principal, public, require

settings = soc2kit.Settings()
app = FastAPI(title="{{ cookiecutter.project_name }}", **settings.fastapi_docs_kwargs())
kit = soc2kit.install(app, settings)
app.include_router(kit.health_router())

kit.policy.grant("member", "profile", "read")


@app.get("/", dependencies=[public("service banner")])
def index() -> dict[str, str]:
    return {"service": "{{ cookiecutter.project_slug }}"}


@app.get("/me")
def me(principal: Principal = require("profile", "read")) -> dict[str, object]:
    return {"subject": principal.subject, "roles": sorted(principal.roles)}
