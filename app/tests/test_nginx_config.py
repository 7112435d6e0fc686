"""The nginx site template, rendered as the role renders it: what the public can reach."""

import re
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "ansible" / "roles" / "nginx"


PORTS = yaml.safe_load((ROOT / "ansible" / "group_vars" / "all" / "topology.yml").read_text())[
    "tally_ports"
]


def render(**overrides):
    """Render conf.d/tally.conf.j2 with the role's defaults and vars, and a two-host web tier."""
    context = {
        **yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
        **yaml.safe_load((ROLE / "vars" / "main.yml").read_text()),
        # Defaults that are expressions over the environment's variables, resolved here.
        "nginx_server_names": ["localhost", "127.0.0.1"],
        "nginx_https_public_port": PORTS["https"],
        "nginx_upstream_port": PORTS["gunicorn"],
        "nginx_static_origin": f"http://10.0.0.9:{PORTS['s3']}/tally-static/static/",
        "ansible_managed": "Managed by Ansible",
        "groups": {"web": ["web1", "web2"]},
        "hostvars": {"web1": {"tally_address": "10.0.0.3"}, "web2": {"tally_address": "10.0.0.4"}},
        **overrides,
    }
    # An nginx configuration, not HTML: Ansible renders it without escaping too.
    environment = jinja2.Environment(  # noqa: S701
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    environment.filters["comment"] = lambda text: f"# {text}"
    template = (ROOT / "nginx" / "conf.d" / "tally.conf.j2").read_text()
    return environment.from_string(template).render(context)


def location(config, pattern):
    """The body of the first location block whose header matches `pattern`, or None."""
    match = re.search(rf"^\s*location {pattern} \{{\n(.*?)^\s*\}}\n", config, re.M | re.S)
    return match and match.group(1)


def test_the_admin_is_open_by_default():
    config = render()
    assert location(config, r"\^~ /admin/") is None
    assert "deny all" not in location(config, "/")


def test_the_admin_is_refused_outside_the_allowed_networks():
    config = render(nginx_admin_allow=["10.8.0.0/16", "2001:db8::/32"])
    admin = location(config, r"\^~ /admin/")
    rules = re.findall(r"^\s*(allow|deny) (\S+);", admin, re.M)
    assert rules == [("allow", "10.8.0.0/16"), ("allow", "2001:db8::/32"), ("deny", "all")]
    assert "include snippets/tally-proxy-app.conf;" in admin
    assert "limit_req zone=tally_post" in admin


def test_public_readyz_gets_the_apps_liveness_not_the_backend_details():
    readyz = location(render(), "= /readyz")
    assert re.search(r"^\s*rewrite \^ /healthz break;", readyz, re.M)
    assert "include snippets/tally-proxy-app.conf;" in readyz


@pytest.mark.parametrize("name", ["nginx_admin_allow"])
def test_the_admin_allow_list_is_documented_with_its_default(name):
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    option = specs["argument_specs"]["main"]["options"][name]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert option["default"] == defaults[name] == []
    assert name in (ROOT / "nginx" / "README.md").read_text()
