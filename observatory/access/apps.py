from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "observatory.access"
    label = "access"
    verbose_name = "Access: tokens and roles"
