from django.apps import AppConfig


class KpisConfig(AppConfig):
    name = "observatory.kpis"
    label = "kpis"
    verbose_name = "KPIs: rollups and their fill"
