from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    name = "observatory.dashboards"
    label = "dashboards"
    verbose_name = "Dashboards: pages, figures and live updates"
