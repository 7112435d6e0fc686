"""Static files: hashed names in an S3 bucket, linked through the site's own STATIC_URL."""

from urllib.parse import urljoin

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin
from django.utils.encoding import filepath_to_uri
from storages.backends.s3 import S3StaticStorage


class _SiteURL:
    """Link files under STATIC_URL (the load balancer proxies it to the bucket), not the bucket."""

    def url(self, name, parameters=None, expire=None, http_method=None):
        return urljoin(settings.STATIC_URL, filepath_to_uri(name))


class StaticStorage(ManifestFilesMixin, _SiteURL, S3StaticStorage):
    """collectstatic uploads content-hashed copies, so they can be cached for a year."""
