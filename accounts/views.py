"""Admin pages for people and roles, and each user's own account page (password, token)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from accounts import selectors, services
from accounts.forms import TokenForm, UserCreateForm, UserUpdateForm
from config.roles import ADMIN, AuthenticatedRequest, role_required, signed_in_required

User = get_user_model()


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/")


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def user_list(request: AuthenticatedRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = services.user_create(
                username=data["username"],
                email=data["email"],
                role=data["role"],
                password=data["password"] or None,
            )
        except services.AccountError as exc:
            form.add_error(exc.field or None, str(exc))
        else:
            messages.success(request, f"Created {user.get_username()} ({data['role']}).")
            return redirect("accounts:user-detail", pk=user.pk)
    users = [
        {
            "user": user,
            "role": selectors.user_role(user),
            "token": getattr(user, "auth_token", None),
        }
        for user in selectors.user_list()
    ]
    return render(request, "accounts/user_list.html", {"users": users, "form": form})


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def user_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(selectors.user_list(), pk=pk)
    update_form = UserUpdateForm(
        initial={
            "email": user.email,
            "role": selectors.user_role(user),
            "is_active": user.is_active,
        }
    )
    password_form: Any = SetPasswordForm(user)
    link = ""
    action = request.POST.get("action", "") if request.method == "POST" else ""
    if action == "update":
        update_form = UserUpdateForm(request.POST)
        if update_form.is_valid():
            data = update_form.cleaned_data
            try:
                if data["email"] != user.email:
                    user.email = data["email"]
                    user.save(update_fields=["email"])
                services.user_role_set(user=user, role=data["role"])
                if data["is_active"] != user.is_active:
                    services.user_set_active(user=user, active=data["is_active"], by=request.user)
            except services.AccountError as exc:
                update_form.add_error(exc.field or None, str(exc))
            else:
                messages.success(request, f"Saved {user.get_username()}.")
                return redirect("accounts:user-detail", pk=user.pk)
    elif action == "password":
        password_form = SetPasswordForm(user, request.POST)
        if password_form.is_valid():
            services.user_set_password(
                user=user, password=password_form.cleaned_data["new_password1"]
            )
            messages.success(request, f"Set a new password for {user.get_username()}.")
            return redirect("accounts:user-detail", pk=user.pk)
    elif action == "link":
        link = services.user_password_link(user=user, base_url=_base_url(request))
    elif action == "send-link":
        try:
            link = services.user_password_link_send(user=user, base_url=_base_url(request))
        except services.AccountError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Mailed a set-password link to {user.email}.")
    elif action == "revoke-token":
        if services.token_revoke(user=user):
            messages.success(request, f"Revoked {user.get_username()}'s API token.")
        return redirect("accounts:user-detail", pk=user.pk)
    elif request.method == "POST":
        return HttpResponse("Unknown action.", status=400)
    context = {
        "subject": user,
        "role": selectors.user_role(user),
        "token": selectors.user_token(user),
        "update_form": update_form,
        "password_form": password_form,
        "link": link,
    }
    failed = update_form.errors or password_form.errors or action == "send-link" and not link
    return render(request, "accounts/user_detail.html", context, status=400 if failed else 200)


@signed_in_required
@require_http_methods(["GET", "POST"])
def me(request: AuthenticatedRequest) -> HttpResponse:
    """Every signed-in user: change their password, see, create, rotate or revoke their token."""
    user = request.user
    password_form = PasswordChangeForm(user)  # type: ignore[arg-type]
    key = ""
    action = request.POST.get("action", "") if request.method == "POST" else ""
    if action == "password":
        password_form = PasswordChangeForm(user, request.POST)  # type: ignore[arg-type]
        if password_form.is_valid():
            services.user_set_password(
                user=user, password=password_form.cleaned_data["new_password1"]
            )
            update_session_auth_hash(request, user)  # type: ignore[arg-type]
            messages.success(request, "Your password changed. Your API token was revoked.")
            return redirect("accounts:me")
    elif action == "token":
        token_form = TokenForm(request.POST)
        if not token_form.is_valid():
            return HttpResponse("Unknown token action.", status=400)
        what = token_form.cleaned_data["token_action"]
        if what == "revoke":
            services.token_revoke(user=user)
            messages.success(request, "Your API token was revoked.")
            return redirect("accounts:me")
        key = services.token_issue(user=user, rotate=what == "rotate").key
    elif request.method == "POST":
        return HttpResponse("Unknown action.", status=400)
    context = {
        "password_form": password_form,
        "token": selectors.user_token(user),  # type: ignore[arg-type]
        "key": key,
        "role": selectors.user_role(user),  # type: ignore[arg-type]
    }
    status = 400 if action == "password" else 200
    return render(request, "accounts/me.html", context, status=status)


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """The one-time set-password link (Django's password-reset confirmation)."""

    template_name = "accounts/set_password.html"
    success_url = reverse_lazy("login")
    post_reset_login = False

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        services.token_revoke(user=form.user)
        messages.success(self.request, "Your password is set. Log in with it.")
        return response


class LogoutView(auth_views.LogoutView):
    """Logging out of the browser also revokes the user's API token."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated:
            services.token_revoke(user=request.user)
        return super().post(request, *args, **kwargs)
