"""The gateway installs as a package, and a plugin built outside this repository depends on it.

`pyproject.toml` lists the top-level modules and packages (a flat layout cannot be discovered);
the first test keeps that list whole. The second is what a team writing a plugin does: copy the
example plugin somewhere else, make a fresh virtualenv, install the gateway and the plugin into
it with pip, and run the plugin's tests, the conformance kit included, with that venv's pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support import ROOT

PLUGIN = ROOT / "examples" / "gateway-lmdb-store"
TOP_LEVEL = ("gateway", "plugins", "workers")
# What is neither product nor needed to build it, left out of the copies pip builds from.
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "var", "*.db*")
INSTALL_SECONDS = 300


def test_every_package_and_script_of_the_product_is_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = sorted(
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in TOP_LEVEL
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    )
    assert sorted(config["packages"]) == found
    assert config["py-modules"] == ["app", "wsgi", "settings"]
    assert "lua/*.lua" in config["package-data"]["gateway"]
    assert not [p for p in (ROOT / "gateway").rglob("*.lua") if p.parent != ROOT / "gateway" / "lua"]


@pytest.mark.integration
def test_a_plugin_copied_out_of_the_repository_installs_and_passes_the_conformance_kit(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    place = tmp_path_factory.mktemp("out-of-tree")
    assert ROOT not in place.parents
    gateway = shutil.copytree(ROOT, place / "gateway-src", ignore=NOT_COPIED)  # a clean tree to build
    plugin = shutil.copytree(PLUGIN, place / "gateway-lmdb-store", ignore=NOT_COPIED)
    venv = place / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}

    def run(*args: str | Path, cwd: Path = place, timeout: float = 120) -> str:
        done = subprocess.run(
            [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{args}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        return done.stdout

    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    pip = (python, "-m", "pip", "--disable-pip-version-check", "install", "--quiet", "--no-compile")
    run(*pip, gateway, f"{plugin}[test]", timeout=INSTALL_SECONDS)

    # Everything comes from the venv: the gateway's modules, its Lua scripts, the app itself.
    imported = run(
        python,
        "-c",
        "import app, plugins.conformance, gateway.scripts as r;"
        "print(plugins.conformance.__file__); print(len(list(r.LUA.glob('*.lua'))));"
        "print(len(app.create_app({'app_env': 'development', 'database_url': 'sqlite:///app.db'}).url_map._rules))",
    ).split()
    assert Path(imported[0]).is_relative_to(venv)
    assert int(imported[1]) == len(list((ROOT / "gateway" / "lua").glob("*.lua")))
    assert int(imported[2]) > 10

    report = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=plugin)
    assert " passed" in report and "failed" not in report and "error" not in report
