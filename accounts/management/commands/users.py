"""``manage.py users``: the admin pages' user management, for scripts.

manage.py users list
manage.py users add NAME --role annotator [--email E] [--password-stdin] [--link URL]
manage.py users role NAME researcher
manage.py users deactivate NAME | activate NAME
manage.py users set-password NAME            (reads the password from stdin)
manage.py users link NAME --base-url https://preflab.example.org [--send]
manage.py users token NAME [--rotate] | revoke-token NAME
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts import selectors, services
from config.roles import ROLES


class Command(BaseCommand):
    help = "Create users, set roles, deactivate, reset passwords, make set-password links, manage tokens."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="every user with role, status and token")
        add = sub.add_parser("add", help="create a user with one role")
        add.add_argument("username")
        add.add_argument("--role", choices=ROLES, required=True)
        add.add_argument("--email", default="")
        add.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        add.add_argument("--base-url", default="", help="print a set-password link on this site")
        role = sub.add_parser("role", help="set the user's one role")
        role.add_argument("username")
        role.add_argument("role", choices=ROLES)
        for name in ("activate", "deactivate", "revoke-token"):
            sub.add_parser(name).add_argument("username")
        setpw = sub.add_parser("set-password", help="read a new password from stdin")
        setpw.add_argument("username")
        link = sub.add_parser("link", help="a one-time set-password link")
        link.add_argument("username")
        link.add_argument("--base-url", required=True, help="the site's address, https://...")
        link.add_argument("--send", action="store_true", help="also mail it to the user")
        token = sub.add_parser("token", help="print the user's API token (created if needed)")
        token.add_argument("username")
        token.add_argument("--rotate", action="store_true", help="replace it with a new one")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "list":
                self._list()
            elif action == "add":
                password = self._read_password() if options["password_stdin"] else None
                user = services.user_create(
                    username=options["username"],
                    role=options["role"],
                    email=options["email"],
                    password=password,
                )
                self.stdout.write(f"created {user.get_username()} ({options['role']})")
                if options["base_url"]:
                    self.stdout.write(
                        services.user_password_link(user=user, base_url=options["base_url"])
                    )
            else:
                self._on_user(action, self._user(options["username"]), options)
        except services.AccountError as exc:
            raise CommandError(str(exc)) from None

    def _on_user(self, action: str, user: Any, options: dict[str, Any]) -> None:
        if action == "role":
            services.user_role_set(user=user, role=options["role"])
            self.stdout.write(f"{user.username} is now {options['role']}")
        elif action in ("activate", "deactivate"):
            services.user_set_active(user=user, active=action == "activate")
            self.stdout.write(f"{user.username} {action}d")
        elif action == "set-password":
            password = self._read_password(user)
            services.user_set_password(user=user, password=password)
            self.stdout.write(f"password set for {user.username}")
        elif action == "link":
            send = (
                services.user_password_link_send if options["send"] else services.user_password_link
            )
            self.stdout.write(send(user=user, base_url=options["base_url"]))
        elif action == "token":
            self.stdout.write(services.token_issue(user=user, rotate=options["rotate"]).key)
        elif action == "revoke-token":
            revoked = services.token_revoke(user=user)
            self.stdout.write("token revoked" if revoked else "no token to revoke")

    def _user(self, username: str) -> Any:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        return user

    def _read_password(self, user: Any = None) -> str:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("no password on stdin")
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        return password

    def _list(self) -> None:
        for user in selectors.user_list():
            token = selectors.user_token(user)
            state = "active" if user.is_active else "deactivated"
            token_text = (
                "no token" if token is None else ("token expired" if token.expired else "token")
            )
            self.stdout.write(
                f"{user.get_username()}\t{selectors.user_role(user) or '-'}\t{state}\t{token_text}"
            )
