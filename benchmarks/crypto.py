"""Field encryption cost: soc2kit's v1 format against raw AESGCM, side by side.

One 40-character string per operation. **raw**: ``AESGCM.encrypt`` then
``decrypt`` with a fresh nonce and no associated data (the floor).
**soc2kit**: typed encode, encrypt with the place-bound AAD, decrypt, decode.
Also the blind index of one value. Variants are interleaved per repetition.

    .venv/bin/python benchmarks/crypto.py [--write docs/performance.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from soc2kit.crypto import (
    BlindIndexKey,
    DataKey,
    FieldContext,
    blind_index,
    decode_value,
    decrypt,
    encode_value,
    encrypt,
)


def measure(calls: int, repeats: int) -> dict[str, list[float]]:
    key = os.urandom(32)
    raw = AESGCM(key)
    data_key = DataKey(1, key)
    keys = {1: data_key}
    index_key = BlindIndexKey(1, os.urandom(32))
    ctx = FieldContext("customers", "email", "acme", "0190a000-0000-7000-8000-000000000001")
    text = "y" * 40
    raw_plain = text.encode()

    def raw_roundtrip() -> None:
        nonce = os.urandom(12)
        raw.decrypt(nonce, raw.encrypt(nonce, raw_plain, None), None)

    def soc2kit_roundtrip() -> None:
        decode_value(decrypt(keys, encrypt(data_key, encode_value(text), ctx), ctx))

    def index() -> None:
        blind_index(index_key, text, ctx, "casefold")

    variants: dict[str, Callable[[], None]] = {
        "raw": raw_roundtrip,
        "soc2kit": soc2kit_roundtrip,
        "blind_index": index,
    }
    for fn in variants.values():
        for _ in range(2000):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    return samples


def render(samples: dict[str, list[float]], command: str, calls: int, repeats: int) -> str:
    med = {k: statistics.median(v) for k, v in samples.items()}
    ratio = med["soc2kit"] / med["raw"]
    rows = "\n".join(
        f"| {name} | {med[name]:.2f} ({min(v):.2f} to {max(v):.2f}) |"
        for name, v in samples.items()
    )
    return (
        "## Field encryption: one value\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with:\n\n```sh\n{command}\n```\n\n"
        f"- {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"cryptography {cryptography.__version__}; {calls:,} calls per variant and repetition, "
        f"{repeats} interleaved repetitions; medians (min to max).\n\n"
        "| operation | µs per call |\n|---|---:|\n"
        f"{rows}\n\n"
        f"- Encrypt+decrypt with AAD, header and typed encoding vs raw `AESGCM`: **{ratio:.2f}x**. "
        f"Target at most 2x: **{'PASS' if ratio <= 2 else 'MISS'}**.\n"
        f"- Blind index (HMAC-SHA256, casefold): {med['blind_index']:.2f} µs. "
        f"Target at most 3 µs: **{'PASS' if med['blind_index'] <= 3 else 'MISS'}**.\n"
    )


def write_section(path: Path, text: str) -> None:
    start, end = "<!-- crypto:start -->", "<!-- crypto:end -->"
    current = path.read_text() if path.exists() else "# Performance\n"
    block = f"{start}\n{text}{end}"
    if start in current:
        current = re.sub(
            re.escape(start) + ".*?" + re.escape(end), lambda _: block, current, flags=re.S
        )
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    args = parser.parse_args()
    samples = measure(args.calls, args.repeats)
    for name, values in samples.items():
        print(f"{name:12} {statistics.median(values):6.2f} µs")
    if args.write:
        command = ".venv/bin/python benchmarks/crypto.py --write " + str(args.write)
        write_section(args.write, render(samples, command, args.calls, args.repeats))


if __name__ == "__main__":
    main()
