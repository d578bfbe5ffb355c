import logging

from django.apps import AppConfig

#: Loggers whose records carry request URLs (Shopify's ?token=...): each gets the filter
#: itself, as the servers configure their own handlers before Django starts.
URL_LOGGERS = (
    "uvicorn.access",
    "uvicorn.error",
    "gunicorn.access",
    "gunicorn.error",
    "django.request",
    "django.server",
)


class AccessConfig(AppConfig):
    name = "observatory.access"
    label = "access"
    verbose_name = "Access: tokens and roles"

    def ready(self) -> None:
        from observatory.lib.logredact import RedactTokens

        for name in URL_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, RedactTokens) for f in logger.filters):
                logger.addFilter(RedactTokens())
