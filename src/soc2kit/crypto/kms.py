"""AWS KMS as the key-encryption key: data keys are wrapped by a KMS key, never stored bare.

The KEK never leaves KMS, so a database dump plus the application's disk is not enough
to read encrypted columns; every unwrap is an authorised, CloudTrail-logged KMS call.
The call context (key id, scope, purpose) is sent as the KMS EncryptionContext, which
KMS binds to the ciphertext: a wrapped key copied to another keyring row fails to decrypt.

boto3 is an optional extra (``pip install 'soc2kit[aws]'``), imported only when this
provider is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from soc2kit._aws import aws_client, error_code
from soc2kit.crypto.errors import KeyUnavailableError
from soc2kit.crypto.providers import KeyProvider, WrappedKey
from soc2kit.errors import ConfigurationError

_DATA_KEY_BYTES = 32


def _is_alias(key_id: str) -> bool:
    return key_id.startswith("alias/") or ":alias/" in key_id


class AwsKmsProvider(KeyProvider):
    """Wraps data keys with a symmetric AWS KMS key (``Encrypt``/``Decrypt``/``ReEncrypt``).

    ``key_id`` (key id, key ARN, alias name or alias ARN) is the KEK new keys are wrapped
    under. Decrypt does not pin it: symmetric KMS ciphertexts name their own key, so blobs
    wrapped before a move to a new KMS key keep unwrapping. ``allowed_key_ids`` (key ids or
    key ARNs, not aliases; KMS reports the key, not the alias) restricts which keys'
    blobs are accepted; ``key_id`` is added to it unless it is an alias.

    The IAM principal needs ``kms:Encrypt`` and ``kms:ReEncryptTo`` on ``key_id``, and
    ``kms:Decrypt`` and ``kms:ReEncryptFrom`` on every key whose blobs it must read.
    """

    name = "aws-kms"

    def __init__(
        self,
        key_id: str,
        *,
        client: Any | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        allowed_key_ids: Iterable[str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        if not key_id or not key_id.isprintable():
            raise ConfigurationError("AWS KMS needs a key id, key ARN or alias")
        # A KMS outage must fail a request in seconds, not hang it (see soc2kit._aws).
        client, self._aws_errors = aws_client(
            "kms",
            what="AWS KMS",
            client=client,
            region_name=region_name,
            endpoint_url=endpoint_url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )
        self.key_id = key_id
        self._client: Any = client
        self._allowed = self._allowed_set(key_id, allowed_key_ids)

    @staticmethod
    def _allowed_set(key_id: str, allowed_key_ids: Iterable[str] | None) -> frozenset[str] | None:
        if allowed_key_ids is None:
            return None
        if isinstance(allowed_key_ids, str):
            raise ConfigurationError("allowed_key_ids is a list of key ids or key ARNs")
        allowed = {entry.strip() for entry in allowed_key_ids if entry.strip()}
        if any(_is_alias(entry) for entry in allowed):
            raise ConfigurationError(
                "allowed_key_ids takes key ids or key ARNs, not aliases "
                "(KMS reports which key decrypted, not which alias)"
            )
        if not _is_alias(key_id):
            allowed.add(key_id)
        if not allowed:
            raise ConfigurationError("allowed_key_ids must name the key(s) that key_id points to")
        return frozenset(allowed)

    def __repr__(self) -> str:
        return f"AwsKmsProvider(key_id={self.key_id!r}, region={self._region()!r})"

    # KeyProvider ---------------------------------------------------------------
    def wrap(self, key: bytes, context: Mapping[str, str]) -> WrappedKey:
        if len(key) != _DATA_KEY_BYTES:
            raise ValueError("data keys are 32 bytes")
        response = self._call(
            "Encrypt",
            self._client.encrypt,
            KeyId=self.key_id,
            Plaintext=key,
            EncryptionContext=dict(context),
        )
        return self._wrapped(response, "Encrypt")

    def unwrap(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        # No KeyId: the ciphertext names its key, and blobs from an earlier KEK must open.
        response = self._call(
            "Decrypt",
            self._client.decrypt,
            CiphertextBlob=blob,
            EncryptionContext=dict(context),
        )
        self._check_source(response.get("KeyId"), "Decrypt")
        plaintext = response.get("Plaintext")
        if not isinstance(plaintext, bytes) or len(plaintext) != _DATA_KEY_BYTES:
            raise KeyUnavailableError("AWS KMS Decrypt returned something other than a data key")
        return plaintext

    def rewrap(self, blob: bytes, context: Mapping[str, str]) -> WrappedKey:
        """Move ``blob`` under ``key_id`` inside KMS: the data key never reaches this process."""
        ctx = dict(context)
        response = self._call(
            "ReEncrypt",
            self._client.re_encrypt,
            CiphertextBlob=blob,
            SourceEncryptionContext=ctx,
            DestinationKeyId=self.key_id,
            DestinationEncryptionContext=ctx,
        )
        # Without this check, rewrap would launder a blob from a refused key into an allowed one.
        self._check_source(response.get("SourceKeyId"), "ReEncrypt")
        return self._wrapped(response, "ReEncrypt")

    def describe(self) -> dict[str, str]:
        facts = {"provider": self.name, "kek": f"aws-kms:{self.key_id}", "region": self._region()}
        if self._allowed is not None:
            facts["allowed_key_ids"] = ",".join(sorted(self._allowed))
        return facts

    # helpers -------------------------------------------------------------------
    def _call(self, operation: str, method: Any, **params: Any) -> dict[str, Any]:
        try:
            response = method(**params)
        except self._aws_errors as exc:
            code = error_code(exc)
        else:
            if not isinstance(response, dict):
                raise KeyUnavailableError(f"AWS KMS {operation} returned no response")
            return response
        # Raised outside the except block so the AWS exception (whose text and traceback
        # locals may hold the request) is not even kept as __context__.
        raise KeyUnavailableError(f"AWS KMS {operation} failed: {code}") from None

    def _wrapped(self, response: Mapping[str, Any], operation: str) -> WrappedKey:
        blob = response.get("CiphertextBlob")
        if not isinstance(blob, bytes) or not blob:
            raise KeyUnavailableError(f"AWS KMS {operation} returned no ciphertext")
        kms_key = response.get("KeyId")
        return WrappedKey(blob, f"aws-kms:{kms_key if isinstance(kms_key, str) else self.key_id}")

    def _check_source(self, kms_key: object, operation: str) -> None:
        if self._allowed is None:
            return
        if isinstance(kms_key, str) and (
            kms_key in self._allowed or kms_key.rpartition(":key/")[2] in self._allowed
        ):
            return
        shown = kms_key if isinstance(kms_key, str) and kms_key.isprintable() else "unknown"
        raise KeyUnavailableError(
            f"AWS KMS {operation} refused: the wrapped key is under KMS key {shown!r}, "
            "which is not in allowed_key_ids"
        )

    def _region(self) -> str:
        region = getattr(getattr(self._client, "meta", None), "region_name", None)
        return region if isinstance(region, str) else "unknown"
