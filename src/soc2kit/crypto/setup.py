"""Choosing the KEK provider from settings (fail closed in production)."""

from __future__ import annotations

from soc2kit.crypto.providers import KeyProvider, LocalKeyProvider
from soc2kit.errors import ConfigurationError
from soc2kit.settings import Settings


def build_provider(settings: Settings) -> KeyProvider:
    """The configured KEK provider; the generated development KEK outside production only."""
    provider: KeyProvider
    if settings.encryption_kms_key_id is not None:
        from soc2kit.crypto.kms import AwsKmsProvider  # boto3 is the optional "aws" extra

        provider = AwsKmsProvider(
            settings.encryption_kms_key_id,
            region_name=settings.encryption_kms_region,
            endpoint_url=settings.encryption_kms_endpoint_url,
            allowed_key_ids=settings.encryption_kms_allowed_key_ids or None,
        )
    elif settings.encryption_kek_file is not None:
        provider = LocalKeyProvider.from_file(settings.encryption_kek_file)
    elif settings.encryption_kek is not None:
        provider = LocalKeyProvider.from_spec(settings.encryption_kek.get_secret_value())
    elif settings.is_production:
        raise ConfigurationError(
            "no key-encryption key: set encryption_kek, encryption_kek_file or "
            "encryption_kms_key_id"
        )
    else:
        provider = LocalKeyProvider.development(settings.data_dir)
    if settings.is_production and provider.is_development():
        raise ConfigurationError("the development key-encryption key is refused in production")
    return provider
