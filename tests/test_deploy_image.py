"""The container image's install and start steps, tested without an OCI runtime (this
machine cannot run one: podman's crun may not set rlimits here, and no base image can be
pulled). What ``deploy/Containerfile`` does is done on the host instead: the project is
built as a wheel and installed (non-editable, so the templates, stylesheet, prompts and
migrations must be in the package), the image's ``CMD`` is started as the image's non-root
uid in a state folder it owns, and the image's ``HEALTHCHECK`` command must pass.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.test_deploy_caddy import stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = (ROOT / "deploy" / "Containerfile").read_text()
SETPRIV = shutil.which("setpriv")


def instruction(name: str) -> str:
    """The (continued) text of the last ``name`` instruction in the Containerfile."""
    text = CONTAINERFILE.replace("\\\n", " ")
    found = [line for line in text.splitlines() if line.startswith(name + " ")]
    assert found, f"no {name} in deploy/Containerfile"
    return found[-1][len(name) + 1 :].strip()


def test_the_image_runs_as_a_fixed_non_root_user_with_a_healthcheck() -> None:
    assert instruction("USER") == "receptionist"
    uid = re.search(r"useradd [^&]*--uid (\d+)", CONTAINERFILE.replace("\\\n", " "))
    assert uid is not None and int(uid.group(1)) >= 1000
    assert "CMD" in instruction("HEALTHCHECK") and "/healthz" in instruction("HEALTHCHECK")


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A world-traversable folder (the image's /data), owned by the image's uid."""
    folder = Path(tempfile.mkdtemp(prefix="receptionist-image-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is needed to drop to the uid")
def test_the_images_install_and_start_steps_work_as_its_user(state_dir: Path) -> None:
    uid = int(re.findall(r"--uid (\d+)", CONTAINERFILE)[0])
    wheels = state_dir / "wheels"
    # Built from a copy of the tree: setuptools builds in a build/ folder beside the source,
    # which must not appear in the checkout under test.
    source = state_dir / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv*",
            ".hypothesis",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            "*.db*",
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("after_hours_receptionist-*.whl")
    venv = state_dir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The dependencies come from the test environment (no downloads); the project itself
    # is installed from its wheel, as `pip install .` in the image does.
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "test-deps.pth").write_text(
        "\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n"
    )
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    data = state_dir / "data"
    data.mkdir(mode=0o700)
    os.chown(data, uid, uid)

    env_line = instruction("ENV")
    image_env = dict(part.split("=", 1) for part in shlex.split(env_line))
    database = image_env["DATABASE_URL"].replace("/data/", f"{data}/")
    port = free_port()
    command = json.loads(instruction("CMD"))
    assert command[:2] == ["receptionist", "serve"]
    command = [str(venv / "bin" / "receptionist"), *command[1:]]
    command[command.index("--port") + 1] = str(port)
    command[command.index("--host") + 1] = "127.0.0.1"
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(data),
        "DATABASE_URL": database,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    as_user = [SETPRIV or "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    service = subprocess.Popen(
        [*as_user, *command],
        cwd=data,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, service, "the image's CMD")
        healthcheck = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1].strip())
        healthcheck = [str(venv / "bin" / "python"), *healthcheck[1:]]
        healthcheck[-1] = healthcheck[-1].replace("8080", str(port))
        result = subprocess.run(
            [*as_user, *healthcheck],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        # Package data made it into the wheel: the staff stylesheet is served.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/staff/staff.css") as r:
            assert r.status == 200
    finally:
        stop(service)
    database_file = data / "receptionist.db"
    assert database_file.exists() and database_file.stat().st_uid == uid
