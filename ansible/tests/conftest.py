"""Provision the `test` environment's fleet from nothing, once per session, with `make`."""

import os

import pytest

from loadtests.fleet import Fleet
from provisioning import make

ENV = "test"


@pytest.fixture(scope="session")
def fleet():
    """A fleet provisioned from nothing, then provisioned again (the idempotence run).

    Its name, published ports and hosts come from deploy/test, its ports and users from the
    topology (loadtests/fleet.py). The fleet is removed afterwards unless TALLY_KEEP_FLEET=1.
    While working on the tests, TALLY_REUSE_FLEET=1 keeps a fleet from an earlier run and only
    provisions it once more.
    """
    fleet = Fleet.of(ENV)
    reuse = os.environ.get("TALLY_REUSE_FLEET") == "1"
    if not reuse:
        destroyed = make("destroy", f"ENV={ENV}")
        assert destroyed.returncode == 0, destroyed.output[-3000:]
    for name in ("warm",) if reuse else ("cold", "warm"):
        run = make("provision", f"ENV={ENV}")
        assert run.returncode == 0, f"{name} provision failed:\n{run.report()}"
        fleet.runs[name] = run
    yield fleet
    if os.environ.get("TALLY_KEEP_FLEET") != "1":
        make("destroy", f"ENV={ENV}")
