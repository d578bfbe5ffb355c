from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "observatory.pipeline"
    label = "pipeline"
    verbose_name = "pipeline"
