from django.core.management.base import BaseCommand, CommandParser

from observatory.access.actions import do_create_ingest_token


class Command(BaseCommand):
    help = "Issue an ingest token (printed once, alone on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the source, e.g. shopify-bridge or erp-connector")
        parser.add_argument("--system", default="", help="accept only hops of this system")

    def handle(self, *args: object, **opts: str) -> None:
        row, plain = do_create_ingest_token(opts["name"], opts["system"])
        scope = f" for system {row.system}" if row.system else ""
        self.stdout.write(f"ingest token '{row.name}'{scope} (shown once, store it now):")
        self.stdout.write(plain)
