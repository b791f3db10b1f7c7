"""Runs the test OpenID Provider: django-oauth-toolkit on a fresh SQLite
database in DIR, served by waitress on a free loopback port.

    python serve.py --dir DIR [--access-token-ttl SECS]
        [--user NAME:PASSWORD]... [--client 'ID|SECRET|REDIRECTS|POST_LOGOUTS']...

Generates a new RSA signing key for each run (nothing secret is committed),
migrates, creates the users and clients (`manage.py setup_provider`), then
prints `listening on http://127.0.0.1:PORT/o` (the issuer) and serves until
killed.
"""

import argparse
import os
import secrets
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def access_log(app):
    """One stdout line per request: method, path (never the query, which
    can hold codes and tokens) and status."""

    def logged(environ, start_response):
        def start(status, headers, exc_info=None):
            method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
            print(f"access {method} {path} {status.split(' ')[0]}", flush=True)
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return logged


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--access-token-ttl", type=int, default=3600)
    parser.add_argument("--user", action="append", default=[])
    parser.add_argument("--client", action="append", default=[])
    args = parser.parse_args()

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.environ["OP_RSA_PRIVATE_KEY"] = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    os.environ["OP_DJANGO_SECRET_KEY"] = secrets.token_urlsafe(32)
    os.environ["OP_DATABASE"] = os.path.join(args.dir, "op.sqlite3")
    os.environ["OP_ACCESS_TOKEN_TTL"] = str(args.access_token_ttl)
    os.environ["DJANGO_SETTINGS_MODULE"] = "testop.settings"
    sys.path.insert(0, HERE)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    setup = []
    for u in args.user:
        setup += ["--user", u]
    for c in args.client:
        setup += ["--client", c]
    call_command("setup_provider", *setup)

    from django.core.wsgi import get_wsgi_application
    from waitress import create_server

    app = access_log(get_wsgi_application())
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    print(f"listening on http://127.0.0.1:{server.effective_port}/o", flush=True)
    server.run()


if __name__ == "__main__":
    main()
