"""`soc2kit demo` bakes, documents and serves a service; every curl line does what it says."""

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


def _demo(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")}
    # A caller's own setting must not reach the demo: its .env decides.
    env.update(SOC2KIT_DATABASE_URL=f"sqlite:///{tmp_path / 'elsewhere.db'}", COLUMNS="200")
    return subprocess.Popen(
        [sys.executable, "-m", "soc2kit.cli", "demo", "--port", str(port), "--no-install"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until_served(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Every request above"):
            return lines
    raise AssertionError("\n".join(lines))


@pytest.mark.xdist_group("demo")
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_demo_bakes_documents_serves_and_its_curl_lines_work(tmp_path: Path) -> None:
    port = _free_port()
    proc = _demo(tmp_path, port)
    try:
        lines = _read_until_served(proc)
        service = tmp_path / "demo-service"
        assert (service / ".soc2kit-demo").is_file()
        html = service / "docs" / "controls" / "controls.html"
        assert html.is_file() and f"Control documents: {html}" in lines
        verify_line = next(ln for ln in lines if ln.startswith(f"cd {service} && "))
        assert verify_line.endswith(" audit verify")
        assert not (tmp_path / "elsewhere.db").exists()  # the demo's own .env decided

        script = [ln for ln in lines if ln.startswith(("export ", "curl ", "ID="))]
        labels = [ln for ln in lines if ln.startswith("# ") and re.search(r"\(\d{3}", ln)]
        assert len(script) == 10, lines
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
        proc.wait(timeout=30)

    # The printed verify command holds: the demo's requests are sealed and verify.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")}
    verify = subprocess.run(  # exactly the printed line
        ["bash", "-c", verify_line],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.splitlines()[-1].startswith("RESULT      PASS")


def test_demo_refuses_to_replace_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    keep = tmp_path / "demo-service"
    keep.mkdir()
    (keep / "precious.txt").write_text("mine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")}
    result = subprocess.run(
        [sys.executable, "-m", "soc2kit", "demo", "--no-install"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "is not a previous demo" in result.stderr and "Traceback" not in result.stderr
    assert (keep / "precious.txt").read_text() == "mine"


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("demo server did not start")
