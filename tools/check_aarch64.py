"""Check that an edge install (the core and the ``runtime`` and ``live`` extras) resolves to wheels on aarch64 Linux:
Jetson Orin (JetPack 6, Ubuntu 22.04, Python 3.10, glibc 2.35) and Thor (JetPack 7, Ubuntu 24.04, Python 3.12,
glibc 2.39). pip resolves against PyPI for that platform with ``--only-binary=:all:``, so a dependency that would
need a compiler on the device fails here. Nothing is installed (``--dry-run``); PyPI must be reachable.

    .venv/bin/python tools/check_aarch64.py [--extras runtime,live] [--python 3.10 3.12]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GLIBC = {"3.10": 35, "3.12": 39}  # the Ubuntu of the JetPack that ships this Python


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    return wanted


def check(python: str, wanted: list[str]) -> dict[str, str]:
    """-> {package: version} that pip would install on aarch64 for ``python``, or SystemExit with pip's reason."""
    platforms = [f"manylinux_2_{minor}_aarch64" for minor in range(17, GLIBC.get(python, 35) + 1)]
    platforms += ["manylinux2014_aarch64", "linux_aarch64"]
    with tempfile.TemporaryDirectory() as target:
        report = Path(target) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                   "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
                   "--target", str(Path(target) / "site"), "--report", str(report),
                   *[arg for platform in platforms for arg in ("--platform", platform)], *wanted]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            reason = "\n".join(line for line in done.stderr.splitlines() if "ERROR" in line or "error" in line)
            raise SystemExit(f"aarch64 / Python {python}: an edge install does not resolve to wheels:\n"
                             f"{reason or done.stderr[-2000:]}")
        installs = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in installs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="runtime,live")
    parser.add_argument("--python", nargs="+", default=["3.10", "3.12"])
    args = parser.parse_args()
    wanted = requirements(args.extras.split(","))
    for python in args.python:
        resolved = check(python, wanted)
        print(f"aarch64, Python {python}: {len(resolved)} wheels, no source build: "
              + ", ".join(f"{name} {version}" for name, version in sorted(resolved.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
