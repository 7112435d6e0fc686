"""Calibrations: the service times `make calibrate` measured on an environment's fleet, kept in
deploy/<env>/calibration.yml with the fingerprint of what they were measured on (CPU model and
count, host sizes, app release), so a run elsewhere can tell that they are not its own."""

from __future__ import annotations

import dataclasses
import subprocess
import time
import tomllib
from pathlib import Path

import yaml

from .inputs import CALIBRATION_FILE, DEPLOY_DIR, Inputs, load, read_yaml

REPO_ROOT = DEPLOY_DIR.parent
CPUINFO = Path("/proc/cpuinfo")
HEADER = """\
# Written by `make calibrate ENV={env}` on {when}: the service times measured on this
# environment's fleet, and the fingerprint of what they were measured on. Do not edit it:
# calibrate again. The capacity model reads these service times over capacity.yml's.
"""
# A calibration holds where these match; the commit is recorded, not compared (most commits
# do not change a service time, and the version marks a release).
COMPARED = ("cpu_model", "cpu_count", "hosts", "version")


def cpu(cpuinfo: Path = CPUINFO) -> tuple[str, int]:
    """This machine's CPU model and logical CPU count, from /proc/cpuinfo."""
    model, count = "unknown", 0
    for line in cpuinfo.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "processor":
            count += 1
        elif key.strip() == "model name" and model == "unknown":
            model = " ".join(value.split())
    return model, count


def release(root: Path = REPO_ROOT) -> tuple[str, str]:
    """The app's version (pyproject.toml) and the git commit checked out, if any."""
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    try:
        commit = subprocess.run(  # noqa: S603 (fixed arguments)
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return version, commit


def fingerprint(inputs: Inputs, cpuinfo: Path = CPUINFO, root: Path = REPO_ROOT) -> dict:
    """What a calibration depends on: this machine's CPU, the host sizes it gave the fleet,
    the app's release."""
    model, count = cpu(cpuinfo)
    version, commit = release(root)
    hosts = {
        f.name: getattr(inputs, f.name)
        for f in dataclasses.fields(Inputs)
        if f.metadata["section"] == "hosts"
    }
    return {
        "cpu_model": model,
        "cpu_count": count,
        "hosts": hosts,
        "version": version,
        "commit": commit,
    }


def path_of(env: str, deploy_dir: Path = DEPLOY_DIR) -> Path:
    return deploy_dir / env / CALIBRATION_FILE


def write(env: str, service_times: dict, fingerprint: dict, deploy_dir: Path = DEPLOY_DIR) -> Path:
    """Write deploy/<env>/calibration.yml: the measured service times and the fingerprint.
    Never touches capacity.yml, nor another environment's file."""
    path = path_of(env, deploy_dir)
    body = {"fingerprint": fingerprint, "service_times": {"calibrated": True, **service_times}}
    header = HEADER.format(env=env, when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))
    return path


def differences(recorded: dict, current: dict) -> list[str]:
    """What differs between a calibration's fingerprint and the current one, in words."""
    found = []
    for key in COMPARED:
        if key == "hosts":
            old, new = recorded.get("hosts") or {}, current["hosts"]
            found += [
                f"{name} {old.get(name)} -> {new[name]}"
                for name in new
                if old.get(name) != new[name]
            ]
        elif recorded.get(key) != current[key]:
            found.append(f"{key} {recorded.get(key)!r} -> {current[key]!r}")
    return found


def stale(env: str, current: dict, deploy_dir: Path = DEPLOY_DIR) -> str | None:
    """None when env's calibration was measured where `current` describes; else why not, and
    the command that calibrates here."""
    path = path_of(env, deploy_dir)
    todo = (
        f"Run `make calibrate ENV={env}` on this machine, then `make provision ENV={env}` to "
        "apply any sizing that changed; until then capacity verdicts are uncalibrated."
    )
    if not path.is_file():
        return (
            f"ENV={env} has no calibration ({path} is missing): its service times are guesses. "
            + todo
        )
    recorded = read_yaml(path).get("fingerprint") or {}
    found = differences(recorded, current)
    if not found:
        return None
    return (
        f"{path} was measured elsewhere ({recorded.get('cpu_count')} x "
        f"{recorded.get('cpu_model')}); this machine differs: {'; '.join(found)}. {todo}"
    )


def stale_here(env: str, deploy_dir: Path = DEPLOY_DIR) -> str | None:
    """`stale` for this machine and env's current host sizes: what a load test prints first."""
    return stale(env, fingerprint(load(env, deploy_dir)), deploy_dir)
