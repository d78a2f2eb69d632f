from __future__ import annotations

import pytest

from config.roles import user_is_admin, user_is_annotator, user_is_researcher, user_role_add
from tests.factories import UserFactory


def test_it_gives_each_cast_member_their_role(alice, carol, dave) -> None:  # type: ignore[no-untyped-def]
    assert user_is_annotator(alice) and not user_is_admin(alice) and not user_is_researcher(alice)
    assert user_is_admin(carol) and carol.is_staff
    assert user_is_researcher(carol)  # admins can do what researchers do
    assert user_is_researcher(dave) and not user_is_admin(dave)


@pytest.mark.django_db
def test_it_does_not_treat_the_admin_group_without_staff_as_admin() -> None:
    user = UserFactory(username="eve")
    user_role_add(user=user, role="admin")
    user.is_staff = False
    user.save()
    user.refresh_from_db()
    assert not user_is_admin(user)


@pytest.mark.django_db
def test_it_rejects_an_unknown_role() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        user_role_add(user=UserFactory(), role="overlord")
