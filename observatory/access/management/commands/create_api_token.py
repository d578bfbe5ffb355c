from django.core.management.base import BaseCommand, CommandError, CommandParser

from observatory.access.actions import do_create_api_token


class Command(BaseCommand):
    help = "Issue an API token with read or write scope (printed once, on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--scope", choices=["read", "write"], required=True)
        parser.add_argument("--user", default=None, help="the user the token acts for")

    def handle(self, *args: object, **opts: str) -> None:
        try:
            row, plain = do_create_api_token(opts["name"], opts["scope"], opts["user"])
        except Exception as exc:  # unknown user, bad scope: say it plainly
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"API token '{row.name}' with {row.scope} scope (shown once):")
        self.stdout.write(plain)
