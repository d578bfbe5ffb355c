from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    name = "observatory.simulator"
    label = "simulator"
    verbose_name = "Simulator: realistic retail traffic through the ingest endpoints"
