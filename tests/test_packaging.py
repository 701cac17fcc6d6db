"""Packaging traps: unlisted sub-packages vanish from the wheel; folder names must never be
imported as top-level packages."""

import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAPPED = {"cnnc": "cnnc", "backends": "cnnc.backends", "frontends": "cnnc.frontends"}


def _packages_on_disk():
    found = set()
    for folder, prefix in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((prefix, *rel)))
    return found


def test_every_package_is_listed_in_pyproject():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(conf["tool"]["setuptools"]["packages"])
    on_disk = _packages_on_disk()
    assert on_disk - listed == set(), f"packages missing from pyproject: {on_disk - listed}"
    assert listed - on_disk == set(), f"listed packages with no folder: {listed - on_disk}"


def test_folder_names_are_never_top_level_modules():
    code = ("import sys, cnnc, cnnc.backends.reference, cnnc.frontends, cnnc.passes, cnnc.cli;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('backends', 'frontends')];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_help_lists_commands():
    r = subprocess.run([sys.executable, "-m", "cnnc.cli", "--help"], capture_output=True,
                       text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    for cmd in ("demo", "compile"):
        assert cmd in r.stdout
