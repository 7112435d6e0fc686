# The CSV export's keyset pages read a survey's responses in id order; the index is built
# CONCURRENTLY, so starts and page saves are not blocked while it builds.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("surveys", "0002_response_start_key"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="response",
            index=models.Index(fields=["survey", "id"], name="response_survey_id"),
        ),
    ]
