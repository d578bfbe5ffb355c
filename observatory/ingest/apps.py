from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "observatory.ingest"
    label = "ingest"
    verbose_name = "Ingest: the write edge"
