from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import factory
from django.contrib.auth.models import User

from config.roles import user_role_add

PASSWORD = "correct horse battery staple"

T = TypeVar("T")

if TYPE_CHECKING:

    class ModelFactory(factory.django.DjangoModelFactory[T]):
        """``SomeFactory(...)`` returns the model instance it creates: factory_boy's
        metaclass does so, but its types say the call builds a factory."""

        def __new__(cls, *args: Any, **kwargs: Any) -> T:  # type: ignore[misc]  # see above
            ...

else:
    ModelFactory = factory.django.DjangoModelFactory


class UserFactory(ModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation  # called with the built user, not the factory
    def roles(user: User, create: bool, extracted: list[str] | None, **kwargs: Any) -> None:
        user.save()
        for role in extracted or []:
            user_role_add(user=user, role=role)
