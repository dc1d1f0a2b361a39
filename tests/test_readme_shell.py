"""Every ```bash block of README.md runs verbatim, in order, in a fresh directory after the demo.

This is what a new user does: ``make demo``, then paste the README's commands. ``make demo``
creates a venv first, so the test runs the command its recipe runs, with the ``tokenward`` of
this venv, and checks that the recipe is that command. Inside the blocks, ``make demo`` runs the
same command; other ``make`` targets (``test``, ``bench``) are checked to exist in the Makefile
but not run (``make test`` would start this suite again).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
DEMO_RECIPE = "$(BIN)/tokenward demo --db .tokenward/ledger.db"


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _recipe(target: str) -> list[str]:
    lines = MAKEFILE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{target}\s*:", line))
    out = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        out.append(line.strip())
    return out


def _targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*)\s*:", MAKEFILE.read_text(encoding="utf-8"), re.M))


def test_make_demo_runs_the_demo_command() -> None:
    assert _recipe("demo") == [DEMO_RECIPE]


def test_readme_make_targets_exist() -> None:
    used = {m for block in _bash_blocks() for m in re.findall(r"^make ([\w-]+)", block, re.M)}
    assert used and used <= _targets(), used - _targets()


def test_readme_shell_blocks_run_verbatim_after_the_demo(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "tokenward").exists(), "the venv has no tokenward command"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", COLUMNS="120")
    demo = DEMO_RECIPE.replace("$(BIN)/", "")
    # `make demo` inside a block: the recipe's command; other targets exist but do not run here
    prelude = (
        'make() { case "$1" in demo) '
        + demo
        + ' ;; *) echo "make $1: not run by this test" ;; esac; }\n'
    )
    first = subprocess.run(
        shlex.split(demo), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    blocks = _bash_blocks()
    assert len(blocks) >= 4
    for i, block in enumerate(blocks, 1):
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", prelude + block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"README bash block {i} failed:\n{block}\n{done.stderr}"
        assert "error:" not in done.stderr, f"README bash block {i}:\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr
    for made in ("spend.csv", "report.html", "budgets.toml", ".tokenward/budgets.db"):
        assert (tmp_path / made).exists(), made
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h2>Budgets</h2>" in html  # --budgets honoured (rows only for users active today)
