"""`soc2kit demo` serves the example and every curl line it prints does what it says."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_demo_curl_lines_work(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SOC2KIT_DATA_DIR": str(tmp_path / "data"),
        "SOC2KIT_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "COLUMNS": "200",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "soc2kit.cli", "demo", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("Every request above"):
                break
        script = [ln for ln in lines if ln.startswith(("export ", "curl ", "ID="))]
        labels = [ln for ln in lines if ln.startswith("# ")]
        assert len(script) == 8, lines
        _wait_for_port(port)
        # One shell runs the lines in order (the create line keeps the new id in $ID);
        # each request line is rewritten to print its status code.
        probe = []
        for line in script:
            if line.startswith("export "):
                probe.append(line)
            elif line.startswith("ID="):
                probe.append(line.removesuffix("; echo $ID") + '; [ -n "$ID" ] && echo 201')
            else:
                fmt = "curl -s -o /dev/null -w '%{http_code}\\n'"
                probe.append(line.replace("curl -s", fmt, 1).replace(" -i", ""))
        run = subprocess.run(
            ["bash", "-c", "\n".join(probe)], capture_output=True, text=True, timeout=60
        )
        codes = run.stdout.split()
        expected = [re.search(r"\((\d{3})", label).group(1) for label in labels]  # type: ignore[union-attr]
        assert codes == expected, (labels, codes, run.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("demo server did not start")
