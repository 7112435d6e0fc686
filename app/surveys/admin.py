"""Staff-only survey authoring; each change rebuilds the cached definition from the primary."""

from functools import partial

from django.contrib import admin
from django.db import transaction

from routing import PRIMARY
from surveys import services
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
    list_display = ["title", "slug", "is_open", "updated_at"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [PageInline]


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
