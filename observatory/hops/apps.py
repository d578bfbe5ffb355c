from django.apps import AppConfig


class HopsConfig(AppConfig):
    name = "observatory.hops"
    label = "hops"
    verbose_name = "Hops: every span and status event"
