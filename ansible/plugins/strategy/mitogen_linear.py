"""Ansible's linear strategy run through Mitogen (the mitogen package, pinned in uv.lock).

Named here so ansible.cfg can find it wherever the virtualenv lives; the plugin itself is
Mitogen's. See ansible/README.md, "SSH".
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
