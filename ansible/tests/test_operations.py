"""Operating the e2e fleet under a light load with a ledger (loadtests/drills.py): a deploy
with an expand migration, a broken release's deploy, the rollback; a web host's gunicorn
killed, the primary away for a few seconds, and a web host cut off from the database.
`make drills` runs the full set at the target load."""

import pytest

from loadtests import drills
from provisioning import check_drill


def test_a_deploy_with_an_expand_migration_then_a_rollback_fail_no_request(fleet, tmp_path):
    """Between the two, a release that cannot serve is deployed: it stops at the first host
    and keeps the rollback target, which the rollback then uses."""
    before = set(drills._serving(fleet).values())
    summary = drills.run(
        fleet,
        ["deploy", "deploy-broken", "rollback"],
        tmp_path,
        light=True,
        notes={"deploy": {"migration": True}},
    )
    for name in ("deploy", "deploy-broken", "rollback"):
        check_drill(summary, name)
    deploy = summary["drills"]["deploy"]["figures"]
    assert deploy["release"] not in before  # a new release did roll out...
    assert set(deploy["releases"]) == before | {deploy["release"]}  # ...and both answered
    assert set(drills._serving(fleet).values()) == before  # the rollback returned to the old


@pytest.mark.parametrize("name", ["web-kill", "primary-blip", "web-db-cut"])
def test_a_drill_under_light_load(fleet, tmp_path, name):
    check_drill(drills.run(fleet, [name], tmp_path, light=True), name)
