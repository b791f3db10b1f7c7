"""Creates the test users and the OAuth applications (confidential clients,
authorization code grant, RS256 ID tokens) with known credentials."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from oauth2_provider.models import get_application_model


class Command(BaseCommand):
    help = "Create the test users and OAuth applications."

    def add_arguments(self, parser):
        parser.add_argument("--user", action="append", default=[], help="NAME:PASSWORD")
        parser.add_argument(
            "--client",
            action="append",
            default=[],
            help="ID|SECRET|REDIRECT_URIS|POST_LOGOUT_URIS (URIs space separated)",
        )

    def handle(self, *args, **options):
        User = get_user_model()
        for spec in options["user"]:
            name, password = spec.split(":", 1)
            user = User.objects.create_user(
                username=name, email=f"{name}@example.com", password=password
            )
            user.first_name = name.capitalize()
            user.save()
        Application = get_application_model()
        for spec in options["client"]:
            client_id, secret, redirects, post_logout = spec.split("|")
            Application.objects.create(
                name=client_id,
                client_id=client_id,
                client_secret=secret,
                client_type=Application.CLIENT_CONFIDENTIAL,
                authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
                redirect_uris=redirects,
                post_logout_redirect_uris=post_logout,
                algorithm=Application.RS256_ALGORITHM,
                skip_authorization=False,
            )
