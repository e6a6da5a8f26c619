"""The package as a user gets it: a wheel and an sdist built from the tree, the wheel installed
into a clean venv (no system site-packages) with its core dependencies only, where the CLI
starts, a loop runs, and each feature that needs an extra names it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import commit_all, git

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("build", reason="the test extra installs `build`")


def test_extras_name_every_optional_feature() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"ssh", "ray", "plot", "optuna", "mlflow", "all", "test"} <= set(extras)
    core = " ".join(project["dependencies"])
    for heavy in ("matplotlib", "mlflow", "ray", "asyncssh", "cmaes"):
        assert heavy not in core, f"{heavy} belongs in an extra"
    # The default offline agent (portfolio) needs Optuna and numpy: a plain install runs it.
    assert "optuna" in core and "numpy" in core
    assert extras["all"] == ["ratchet[ssh,ray,plot,optuna,mlflow]"]


# Without the tree's PYTHONPATH: the venv must find Ratchet in what it installed, nowhere else.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources, so the build's egg-info and build/ stay out of the
    tree (an egg-info beside the package makes pip think it is installed)."""
    source = tmp_path_factory.mktemp("source")
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "server", source / "server", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
        env=CLEAN_ENV,
    )
    return out


def test_wheel_and_sdist_hold_the_package(dist: Path) -> None:
    (wheel,) = dist.glob("ratchet-*.whl")
    (sdist,) = dist.glob("ratchet-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("engine", "cli", "report", "finalize", "tracking", "lsp/server"):
        assert f"ratchet/{module}.py" in names
    assert not any(name.startswith("tests/") for name in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ratchet = ratchet.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("/pyproject.toml") for m in members)
    assert any(m.endswith("/server/ratchet/engine.py") for m in members)


def test_the_wheel_installs_into_a_clean_venv_and_runs_a_loop(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    (wheel,) = dist.glob("ratchet-*.whl")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
        env=CLEAN_ENV,
    )
    installed = _ok([str(python), "-m", "pip", "list", "--format=freeze"]).lower()
    assert "matplotlib" not in installed and "mlflow" not in installed  # extras stay out
    ratchet = str(venv / "bin" / "ratchet")
    assert "finalize" in _ok([ratchet, "--help"])
    project = _tiny_project(tmp_path / "project")
    out = _ok([ratchet, "-C", str(project), "run", "--max-experiments", "3"])
    assert "kept of 3" in out
    assert "wrote" in _ok([ratchet, "-C", str(project), "report"])
    plot = subprocess.run(
        [ratchet, "-C", str(project), "plot"],
        capture_output=True,
        text=True,
        timeout=120,
        env=CLEAN_ENV,
    )
    assert plot.returncode == 2 and "pip install 'ratchet[plot]'" in plot.stderr
    (project / "ratchet.toml").write_text(
        (project / "ratchet.toml").read_text() + '\n[track]\nmlflow = "sqlite:///m.db"\n'
    )
    commit_all(project, "track")
    tracked = subprocess.run(
        [ratchet, "-C", str(project), "run", "--max-experiments", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=CLEAN_ENV,
    )
    assert tracked.returncode == 2 and "pip install 'ratchet[mlflow]'" in tracked.stderr


def _ok(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=CLEAN_ENV)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def _tiny_project(root: Path) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("X = 3\nprint(f'score: {(X - 5) ** 2}')\n")
    (root / "program.md").write_text("Make the score lower.\n")
    (root / "ratchet.toml").write_text(
        textwrap.dedent(
            f"""\
            [loop]
            editable = "train.py"
            command = "{sys.executable} train.py"
            budget = "10s"
            [metric]
            name = "score"
            [agent]
            kind = "mutate"
            """
        )
    )
    commit_all(root)
    return root
