from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model, password_validation

from config.roles import ADMIN, ANNOTATOR, RESEARCHER

ROLE_CHOICES = [
    (ANNOTATOR, "Annotator: labels queues"),
    (RESEARCHER, "Researcher: reads data, builds snapshots, exports, uses the API"),
    (ADMIN, "Admin: manages models, jobs, queues, runs and users"),
]

User = get_user_model()


class UserCreateForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        validators=[User.username_validator],  # type: ignore[attr-defined]
        help_text="Letters, digits and @/./+/-/_ only.",
    )
    email = forms.EmailField(required=False, help_text="Needed to mail a set-password link.")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=ANNOTATOR)
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to give the person a one-time link to set it themselves.",
    )

    def clean_password(self) -> str:
        password: str = self.cleaned_data.get("password", "")
        if password:
            password_validation.validate_password(password)
        return password


class UserUpdateForm(forms.Form):
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES)
    is_active = forms.BooleanField(required=False, label="Active (can log in and use the API)")


class TokenForm(forms.Form):
    """``issue`` shows (or creates) the token, ``rotate`` replaces it, ``revoke`` deletes it."""

    token_action = forms.ChoiceField(
        choices=[("issue", "issue"), ("rotate", "rotate"), ("revoke", "revoke")]
    )
