from django.apps import AppConfig


class ReconciliationConfig(AppConfig):
    name = "observatory.reconciliation"
    label = "reconciliation"
    verbose_name = "Reconciliation: source against target, per business day"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from observatory.lib.bulk import register_sqlite_functions

        connection_created.connect(register_sqlite_functions)
