from django.apps import AppConfig


class TriageConfig(AppConfig):
    name = "observatory.triage"
    label = "triage"
    verbose_name = "Triage: the exception queue"
