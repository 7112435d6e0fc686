"""Staff-only survey authoring; each change rebuilds the cached definition from the primary."""

from django.contrib import admin

from surveys import services
from surveys.models import Choice, Page, Question, Response, Survey


class RefreshDefinitionMixin:
    """After a change, rebuild the survey's cached definition so takers see it at once."""

    def _survey_slug(self, obj):
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        services.survey_definition_refresh(slug=self._survey_slug(obj))

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        services.survey_definition_refresh(slug=self._survey_slug(form.instance))

    def delete_model(self, request, obj):
        slug = self._survey_slug(obj)
        super().delete_model(request, obj)
        services.survey_definition_refresh(slug=slug)


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
    list_display = ["title", "slug", "is_open", "updated_at"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [PageInline]

    def _survey_slug(self, obj):
        return obj.slug


@admin.register(Page)
class PageAdmin(RefreshDefinitionMixin, admin.ModelAdmin):
    list_display = ["__str__", "survey", "position"]
    list_filter = ["survey"]
    list_select_related = ["survey"]
    inlines = [QuestionInline]

    def _survey_slug(self, obj):
        return obj.survey.slug


@admin.register(Question)
class QuestionAdmin(RefreshDefinitionMixin, admin.ModelAdmin):
    list_display = ["text", "kind", "required", "page"]
    list_filter = ["kind", "page__survey"]
    list_select_related = ["page__survey"]
    inlines = [ChoiceInline]

    def _survey_slug(self, obj):
        return obj.page.survey.slug


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["pk", "survey", "reached_page", "started_at", "completed_at"]
    list_filter = ["survey", ("completed_at", admin.EmptyFieldListFilter)]
    list_select_related = ["survey"]
    readonly_fields = ["survey", "token", "reached_page", "started_at", "completed_at"]

    def has_add_permission(self, request):
        return False
