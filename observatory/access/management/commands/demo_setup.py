from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from observatory.access import tokens
from observatory.access.actions import do_create_ingest_token
from observatory.access.models import IngestToken

DEMO_USER = "admin"
DEMO_PASSWORD = "admin"


class Command(BaseCommand):
    help = (
        "For `make run`: make sure a demo admin user and a demo ingest token exist, and "
        "print them. The token is kept in the data folder so every run reuses it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--token-file", default=str(Path(settings.DATA_DIR) / "demo-token"))

    def handle(self, *args: object, **opts: str) -> None:
        User = get_user_model()
        if not User.objects.filter(username=DEMO_USER).exists():
            User.objects.create_superuser(DEMO_USER, "admin@example.com", DEMO_PASSWORD)
            self.stdout.write(f"created the demo user {DEMO_USER} / {DEMO_PASSWORD}")
        path = Path(opts["token_file"])
        plain = path.read_text().strip() if path.exists() else ""
        live = IngestToken.objects.filter(
            digest=tokens.digest(plain), revoked_at__isnull=True
        ).exists()
        if not plain or not live:
            _, plain = do_create_ingest_token("demo")
            path.write_text(plain + "\n")
            path.chmod(0o600)
        base = settings.OBSERVATORY_BASE_URL
        self.stdout.write(f"Observatory: {base}/  (sign in as {DEMO_USER} / {DEMO_PASSWORD})")
        self.stdout.write(f"OTLP endpoint: {base}/v1/traces   events: {base}/api/v1/events")
        self.stdout.write(f"demo ingest token (in {path}):")
        self.stdout.write(plain)
