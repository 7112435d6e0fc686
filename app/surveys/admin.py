"""Staff-only survey authoring; each change rebuilds the cached definition from the primary."""

from functools import partial

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html

from routing import PRIMARY, replicas
from surveys import export, selectors, services
from surveys.models import Choice, Page, Question, Response, Survey


class RefreshDefinitionMixin:
    """After a change, rebuild the cached definitions it touched so takers see it at once.

    The rebuild waits for the admin's transaction to commit: run inside it, it would cache a
    change that may still roll back, and that takers could not yet save answers against.
    """

    # The lookup from this model to its survey's slug.
    survey_slug_lookup = None

    def _slugs(self, queryset):
        return set(queryset.values_list(self.survey_slug_lookup, flat=True))

    def _slugs_of(self, obj):
        return self._slugs(self.model.objects.filter(pk=obj.pk))

    def _refresh_on_commit(self, slugs):
        for slug in slugs:
            transaction.on_commit(partial(services.survey_definition_refresh, slug=slug), PRIMARY)

    def save_model(self, request, obj, form, change):
        before = self._slugs_of(obj) if change else set()  # a moved object leaves a survey too
        super().save_model(request, obj, form, change)
        self._refresh_on_commit(before | self._slugs_of(obj))

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        self._refresh_on_commit(self._slugs_of(form.instance))

    def delete_model(self, request, obj):
        slugs = self._slugs_of(obj)
        super().delete_model(request, obj)
        self._refresh_on_commit(slugs)

    def delete_queryset(self, request, queryset):
        slugs = self._slugs(queryset)
        super().delete_queryset(request, queryset)
        self._refresh_on_commit(slugs)


class PageInline(admin.TabularInline):
    model = Page
    extra = 0


class QuestionInline(admin.StackedInline):
    model = Question
    extra = 0


class ChoiceInline(admin.TabularInline):
    model = Choice
    extra = 0


@admin.register(Survey)
class SurveyAdmin(RefreshDefinitionMixin, admin.ModelAdmin):
    survey_slug_lookup = "slug"
    list_display = ["title", "slug", "is_open", "updated_at", "export"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [PageInline]

    @admin.display(description="Responses")
    def export(self, obj):
        url = reverse("admin:surveys_survey_export", args=[obj.pk])
        return format_html('<a href="{}">CSV</a>', url)

    def get_urls(self):
        export = path(
            "<int:pk>/export.csv",
            self.admin_site.admin_view(self.export_view),
            name="surveys_survey_export",
        )
        return [export, *super().get_urls()]

    def export_view(self, request, pk):
        """Every response of a survey as CSV (surveys/export.py), read from a replica only."""
        survey = get_object_or_404(Survey.objects.using(PRIMARY), pk=pk)
        if not self.has_view_permission(request, survey):
            raise PermissionDenied
        using = PRIMARY
        if settings.TALLY_REPLICA_ALIASES:
            using = replicas.pool().choose()
        # The definition from the server the answers come from, so it names every question
        # they answer (each chunk is a statement of its own, not one snapshot).
        definition = using and selectors.survey_definition_build(survey.slug, using=using)
        if not definition:
            # Back to the list with the reason, not a 503: nginx would count that against
            # the web host.
            self.message_user(
                request,
                "No replica can serve the export now (it never runs on the primary, and a "
                "survey created a moment ago may not have reached the replicas). Try again in "
                "a minute.",
                messages.WARNING,
            )
            return redirect("admin:surveys_survey_changelist")
        response = StreamingHttpResponse(
            export.csv_lines(definition, using), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{survey.slug}-responses.csv"'
        return response


@admin.register(Page)
class PageAdmin(RefreshDefinitionMixin, admin.ModelAdmin):
    survey_slug_lookup = "survey__slug"
    list_display = ["__str__", "survey", "position"]
    list_filter = ["survey"]
    list_select_related = ["survey"]
    inlines = [QuestionInline]


@admin.register(Question)
class QuestionAdmin(RefreshDefinitionMixin, admin.ModelAdmin):
    survey_slug_lookup = "page__survey__slug"
    list_display = ["text", "kind", "required", "page"]
    list_filter = ["kind", "page__survey"]
    list_select_related = ["page__survey"]
    inlines = [ChoiceInline]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["pk", "survey", "reached_page", "started_at", "completed_at"]
    list_filter = ["survey", ("completed_at", admin.EmptyFieldListFilter)]
    list_select_related = ["survey"]
    readonly_fields = ["survey", "token", "reached_page", "started_at", "completed_at"]

    def has_add_permission(self, request):
        return False
