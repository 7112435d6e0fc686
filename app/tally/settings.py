"""Django settings for Tally: one spine, every deployment-specific value read from the environment.

Each variable is described in app/README.md. Secrets and per-deployment values have no default,
so a missing one stops the process at startup with a message naming it.
"""

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError
from redis.retry import Retry

from routing.aliases import replica_aliases
from tally.env import env_bool, env_float, env_int, env_list, env_str

# ---------------------------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------------------------
SECRET_KEY = env_str("TALLY_SECRET_KEY")
# Old keys still accepted for signatures (sessions, resume cookies) while a new key rolls out.
SECRET_KEY_FALLBACKS = env_list("TALLY_SECRET_KEY_FALLBACKS", [])
DEBUG = env_bool("TALLY_DEBUG", False)
ALLOWED_HOSTS = env_list("TALLY_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env_list("TALLY_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "tally",
    "surveys",
]

MIDDLEWARE = [
    # Outermost: every response, a 500 or a 503 too, names the release that made it.
    "tally.release.ReleaseHeaderMiddleware",
    *(
        ["tally.middleware.ServerTimingMiddleware"]
        if env_bool("TALLY_SERVER_TIMING", False)
        else []
    ),
    "django.middleware.security.SecurityMiddleware",
    "routing.middleware.ReadYourWritesMiddleware",
    "tally.middleware.SessionStoreMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tally.middleware.ServiceUnavailableMiddleware",
    # After ServiceUnavailable: it retries a failed replica read before that one sees the error.
    "routing.middleware.ReplicaFailoverMiddleware",
]

ROOT_URLCONF = "tally.urls"
WSGI_APPLICATION = "tally.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------------------------------------
# Databases: a primary and any number of streaming replicas, each reached through the web
# host's local pgbouncer in transaction pooling mode.
# ---------------------------------------------------------------------------------------------
# Connections to the local pgbouncer are kept for a minute: a fresh one costs a SCRAM handshake
# (thousands of PBKDF2 rounds on both ends) on every request, and an idle client connection
# holds no server connection in transaction mode, so keeping it is cheap. The health check
# replaces a connection that pgbouncer or a restart closed: tally/postgresql/base.py polls the
# socket instead of sending a SELECT 1 through pgbouncer.
# https://docs.djangoproject.com/en/5.2/ref/databases/#persistent-connections
CONN_MAX_AGE = env_int("TALLY_DB_CONN_MAX_AGE", 60, minimum=0)


def _database(url, *, connect_timeout):
    config = dj_database_url.parse(url, conn_max_age=CONN_MAX_AGE, conn_health_checks=True)
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(f"Tally needs PostgreSQL; {config['ENGINE']} is not supported.")
    # Django's backend with a health check that sends nothing while the socket is quiet.
    config["ENGINE"] = "tally.postgresql"
    # Transaction pooling hands each transaction a possibly different server connection, so:
    # - no server-side cursors (they outlive the transaction that opened them);
    #   https://docs.djangoproject.com/en/5.2/ref/databases/#transaction-pooling-and-server-side-cursors
    # - no server-side binding, hence no named prepared statements that another server
    #   connection would not know (psycopg's client-side binding is the default; kept explicit).
    config["DISABLE_SERVER_SIDE_CURSORS"] = True
    config["OPTIONS"] = {
        "server_side_binding": False,
        "connect_timeout": connect_timeout,
        "application_name": env_str("TALLY_DB_APPLICATION_NAME", "tally"),
    }
    return config


DATABASES = {
    "default": _database(
        env_str("TALLY_DATABASE_URL"), connect_timeout=env_int("TALLY_DB_CONNECT_TIMEOUT", 5)
    ),
}
# Zero or more replicas as NAME=URL (the inventory's host names; alias replica_NAME) or bare
# URLs (alias replicaN). None: every read goes to the primary.
TALLY_REPLICA_ALIASES = []
for _alias, _url in replica_aliases(env_list("TALLY_REPLICA_URLS", [])):
    TALLY_REPLICA_ALIASES.append(_alias)
    DATABASES[_alias] = _database(
        # A dead replica costs at most this long once per breaker interval; keep it short.
        _url,
        connect_timeout=env_int("TALLY_REPLICA_CONNECT_TIMEOUT", 2),
    )
DATABASE_ROUTERS = ["routing.router.PinningReplicaRouter"]

# Read-your-writes: after a write, a client reads from a replica only once that replica has
# replayed past the primary's WAL position at that write, for this long.
TALLY_READ_YOUR_WRITES_SECONDS = env_int("TALLY_READ_YOUR_WRITES_SECONDS", 15, minimum=1)
# How long a replica's state (and the primary's position it is compared with) is trusted before
# it is asked again (per process).
TALLY_REPLICA_STATUS_TTL = env_float("TALLY_REPLICA_STATUS_TTL", 0.2, minimum=0)
# A replica that failed is not tried again for this long: the circuit breaker's interval.
TALLY_REPLICA_RETRY_SECONDS = env_float("TALLY_REPLICA_RETRY_SECONDS", 5, minimum=0)
# A replica lagging further than this is skipped and reads fall back to the primary.
TALLY_REPLICA_MAX_LAG_SECONDS = env_float("TALLY_REPLICA_MAX_LAG_SECONDS", 10, minimum=0)
TALLY_REPLICA_MAX_LAG_BYTES = env_int("TALLY_REPLICA_MAX_LAG_BYTES", 16 * 1024 * 1024, minimum=0)
if TALLY_READ_YOUR_WRITES_SECONDS <= TALLY_REPLICA_MAX_LAG_SECONDS:
    # After the pin expires, any replica in rotation may serve the client: only one that lags
    # less than the pin lasted is sure to hold the client's write.
    raise ImproperlyConfigured(
        "TALLY_READ_YOUR_WRITES_SECONDS must be greater than TALLY_REPLICA_MAX_LAG_SECONDS."
    )

# ---------------------------------------------------------------------------------------------
# Redis: a cache that may evict (allkeys-lru) and a session store that never does
# (noeviction, appendonly), as separate servers so cache pressure cannot log takers out.
# ---------------------------------------------------------------------------------------------
_REDIS_TIMEOUTS = {
    "SOCKET_CONNECT_TIMEOUT": env_float("TALLY_REDIS_CONNECT_TIMEOUT", 1),
    "SOCKET_TIMEOUT": env_float("TALLY_REDIS_TIMEOUT", 1),
}
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": env_str("TALLY_CACHE_URL"),
        "KEY_PREFIX": "tally",
        # A cache outage degrades to misses (rebuilt from the primary) instead of errors.
        "OPTIONS": {**_REDIS_TIMEOUTS, "IGNORE_EXCEPTIONS": True},
    }
    if env_bool("TALLY_CACHE_ENABLED", True)
    # Off only for `make bench`'s naive deployment: every read goes to the database.
    else {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    "sessions": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": env_str("TALLY_SESSION_URL"),
        "KEY_PREFIX": "tally",
        "TIMEOUT": None,
        "OPTIONS": {
            **_REDIS_TIMEOUTS,
            # A restarting session store refuses connections, then answers LOADING while it
            # reads its AOF back: wait for it (backoff 50 ms doubling up to 500 ms per try)
            # instead of failing the request. Other errors (a full store) fail at once.
            "CONNECTION_POOL_KWARGS": {
                "retry": Retry(
                    ExponentialBackoff(cap=0.5, base=0.05),
                    env_int("TALLY_SESSION_STORE_RETRIES", 8, minimum=0),
                ),
                "retry_on_error": [BusyLoadingError],
            },
        },
    },
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
# `make bench`'s naive deployment sets django.contrib.sessions.backends.db, Django's default.
SESSION_ENGINE = env_str("TALLY_SESSION_ENGINE", "django.contrib.sessions.backends.cache")
SESSION_CACHE_ALIAS = "sessions"
SESSION_COOKIE_AGE = env_int("TALLY_SESSION_COOKIE_AGE", 14 * 24 * 3600, minimum=60)
# Sessions one client may start per hour (0: no limit); more get 429. The client is the address
# nginx names in X-Tally-Client, which it leaves empty for networks exempt from its own POST
# limit (the load generators). Only POSTs start sessions (surveys/takers.py), so this bounds what
# one client can keep in the session store: the capacity model checks it fits the headroom.
TALLY_NEW_SESSIONS_PER_CLIENT_HOUR = env_int("TALLY_NEW_SESSIONS_PER_CLIENT_HOUR", 0, minimum=0)

TALLY_DEFINITION_CACHE_SECONDS = env_int("TALLY_DEFINITION_CACHE_SECONDS", 3600, minimum=1)
TALLY_RESULTS_CACHE_SECONDS = env_int("TALLY_RESULTS_CACHE_SECONDS", 30, minimum=1)

# ---------------------------------------------------------------------------------------------
# Static files: hashed names in an S3 bucket (or an S3-compatible server), served under
# STATIC_URL, which the load balancer proxies to the bucket.
# ---------------------------------------------------------------------------------------------
STATIC_URL = env_str("TALLY_STATIC_URL", "/static/")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "tally.storage.StaticStorage",
        "OPTIONS": {
            "bucket_name": env_str("TALLY_STATIC_BUCKET"),
            "endpoint_url": env_str("TALLY_S3_ENDPOINT_URL", None),
            "region_name": env_str("TALLY_S3_REGION", "us-east-1"),
            "access_key": env_str("TALLY_S3_ACCESS_KEY_ID", None),
            "secret_key": env_str("TALLY_S3_SECRET_ACCESS_KEY", None),
            # "path" for S3-compatible servers that have no per-bucket host names.
            "addressing_style": env_str("TALLY_S3_ADDRESSING_STYLE", None),
            "location": "static",
            "querystring_auth": False,
            "file_overwrite": True,
            "object_parameters": {"CacheControl": "public, max-age=31536000, immutable"},
        },
    },
}
MEDIA_ROOT = env_str("TALLY_MEDIA_ROOT", "/var/lib/tally/media")

# ---------------------------------------------------------------------------------------------
# HTTPS and browser security. nginx terminates TLS and sets X-Forwarded-Proto; it overwrites
# any value a client sends, which is what makes trusting the header safe.
# ---------------------------------------------------------------------------------------------
_HTTPS = env_bool("TALLY_HTTPS", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = _HTTPS
# Probes from the host itself come over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("TALLY_HSTS_SECONDS", 31536000 if _HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("TALLY_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("TALLY_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = _HTTPS
CSRF_COOKIE_SECURE = _HTTPS
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

# ---------------------------------------------------------------------------------------------
# Request limits: a page of ten 2,000-character answers, percent-encoded, fits well inside.
# nginx's client_max_body_size refuses anything larger before it reaches a worker.
# ---------------------------------------------------------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("TALLY_MAX_BODY_BYTES", 256 * 1024, minimum=1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200

# ---------------------------------------------------------------------------------------------
# Logging: to stderr, collected by journald under systemd.
# ---------------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": env_str("TALLY_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
