"""URLs for taking surveys and reading their results."""

from django.urls import path, register_converter

from surveys import views


class TokenConverter:
    """A resume token: URL-safe base64, as made by secrets.token_urlsafe."""

    regex = "[A-Za-z0-9_-]{16,32}"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(TokenConverter, "token")

app_name = "surveys"
urlpatterns = [
    path("", views.survey_list, name="list"),
    path("s/<slug:slug>/", views.survey_start, name="start"),
    path("s/<slug:slug>/results/", views.survey_results, name="results"),
    path("s/<slug:slug>/r/<token:token>/", views.survey_resume, name="resume"),
    path("s/<slug:slug>/r/<token:token>/p/<int:position>/", views.survey_page, name="page"),
    path("s/<slug:slug>/r/<token:token>/review/", views.survey_review, name="review"),
    path("s/<slug:slug>/r/<token:token>/done/", views.survey_done, name="done"),
]
