"""Seed demo surveys and their responses, for demos and load tests."""

import random
import time

from django.core.management.base import BaseCommand, CommandError

from surveys import demo, services
from surveys.models import Survey


class Command(BaseCommand):
    help = "Create demo school-climate surveys (5 pages of 10 questions) and responses."

    def add_arguments(self, parser):
        parser.add_argument("--surveys", type=int, default=3, help="How many surveys (default 3).")
        parser.add_argument(
            "--responses", type=int, default=100, help="Responses per survey (default 100)."
        )
        parser.add_argument("--seed", type=int, default=0, help="Random seed, for repeatable data.")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing if any survey exists (for provisioning that runs again).",
        )

    def handle(self, *args, surveys, responses, seed, if_empty, **options):
        if surveys < 0 or responses < 0:
            raise CommandError("--surveys and --responses must be zero or more.")
        if if_empty and Survey.objects.exists():
            self.stdout.write("Surveys exist already; nothing seeded.")
            return
        rng = random.Random(seed)
        start = time.monotonic()
        for number in range(1, surveys + 1):
            slug = f"school-climate-{number}"
            if Survey.objects.filter(slug=slug).exists():
                raise CommandError(f"A survey with slug {slug!r} exists already.")
            survey = demo.create_survey(slug=slug, title=f"School climate survey {number}")
            demo.create_responses(survey, responses, rng=rng)
            services.survey_definition_refresh(slug=slug)
            self.stdout.write(f"Seeded {slug} with {responses} responses.")
        elapsed = time.monotonic() - start
        self.stdout.write(self.style.SUCCESS(f"Done in {elapsed:.1f}s."))
