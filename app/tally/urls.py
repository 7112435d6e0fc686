"""Top-level URLs."""

from django.contrib import admin
from django.urls import include, path
from django.views import defaults

from tally import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("", include("surveys.urls")),
]

# Django's error views run the CSRF check again, so that an error template could use
# {% csrf_token %}. The check reads the request body, and a body Django has just refused (a form
# in another charset than UTF-8) raises again and turns a 400 or a 404 into a 500. Tally's
# error pages hold no form, so they are Django's views without that check.
handler400 = defaults.bad_request.__wrapped__
handler403 = defaults.permission_denied.__wrapped__
handler404 = defaults.page_not_found.__wrapped__
handler500 = defaults.server_error.__wrapped__
