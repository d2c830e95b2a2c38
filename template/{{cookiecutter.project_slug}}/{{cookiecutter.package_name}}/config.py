"""The service's own settings, from environment variables named after the package.

Here ``{{ cookiecutter.package_name | upper }}_*``. soc2kit's settings (identity,
HTTP, audit, keys, database) are a separate model, ``soc2kit.Settings``, read
from ``SOC2KIT_*``: see .env.example and deploy/production.env.example.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ServiceSettings(BaseSettings):
    """Settings of this service. Every field has a safe default."""

    model_config = SettingsConfigDict(
        env_prefix="{{ cookiecutter.package_name | upper }}_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",  # .env also holds soc2kit's SOC2KIT_* lines
        frozen=True,
    )

    policy_file: Path = Field(
        default=PROJECT_ROOT / "policy" / "policy.csv",
        description="The role grants, reviewed in pull requests and applied at start-up.",
    )
    max_page_size: int = Field(default=100, ge=1, le=1000)
