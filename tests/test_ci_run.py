"""`.ci/run` on a fresh machine: Chromium missing, as root and through sudo.

apt-get, sudo, id and make are replaced by shims on PATH that record how they were called,
so the install branch runs for real without touching the machine.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shim(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fresh_machine(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _shim(bin_dir, "apt-get", f'echo "apt-get DEBIAN_FRONTEND=${{DEBIAN_FRONTEND:-}} $*" >> {log}')
    _shim(bin_dir, "sudo", f'echo "sudo $1" >> {log}; exec "$@"')
    _shim(bin_dir, "make", f'echo "make $* in $PWD" >> {log}')
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CHROMIUM_BIN": str(tmp_path / "no-chromium"),
        "HOME": str(tmp_path),
    }
    return repo, log, env


@pytest.mark.parametrize("uid", ["0", "1000"])
def test_installs_chromium_then_runs_make_test(fresh_machine, uid: str) -> None:
    repo, log, env = fresh_machine
    _shim(Path(env["PATH"].split(":")[0]), "id", f'[ "$1" = "-u" ] && echo {uid}')
    result = subprocess.run(
        ["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    apt = [c for c in calls if c.startswith("apt-get")]
    assert apt == [
        "apt-get DEBIAN_FRONTEND=noninteractive update -qq",
        "apt-get DEBIAN_FRONTEND=noninteractive install -y -qq chromium",
    ]
    used_sudo = any(c.startswith("sudo") for c in calls)
    assert used_sudo is (uid != "0")
    assert calls[-1] == f"make test in {repo}"


def test_skips_install_when_chromium_is_there(fresh_machine, tmp_path: Path) -> None:
    repo, log, env = fresh_machine
    chromium = tmp_path / "chromium"
    chromium.write_text("#!/bin/sh\n")
    chromium.chmod(0o755)
    env["CHROMIUM_BIN"] = str(chromium)
    result = subprocess.run(
        ["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [f"make test in {repo}"]


def test_a_failed_install_stops_ci(fresh_machine) -> None:
    repo, log, env = fresh_machine
    _shim(Path(env["PATH"].split(":")[0]), "apt-get", "exit 100")
    result = subprocess.run(
        ["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 100
    assert not log.exists() or "make" not in log.read_text()


@pytest.mark.skipif(os.name != "posix", reason="bash script")
def test_script_is_executable() -> None:
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
