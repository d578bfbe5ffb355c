from django.apps import AppConfig


class TransactionsConfig(AppConfig):
    name = "observatory.transactions"
    label = "transactions"
    verbose_name = "Transactions: the identity graph and stage timelines"
