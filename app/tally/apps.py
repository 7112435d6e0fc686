"""App configuration for the project package (its templates and static files)."""

from django.apps import AppConfig


class TallyConfig(AppConfig):
    name = "tally"
