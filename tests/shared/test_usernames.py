import pytest

from shared.usernames import (
    MAX_PRESENTED_LENGTH,
    InvalidUsernameError,
    normalize_username,
    username_label,
)


@pytest.mark.parametrize(
    ("presented", "canonical"),
    [
        ("alice", "alice"),
        ("  Security-Admin ", "security-admin"),
        ("\uff21\uff2c\uff29\uff23\uff25", "alice"),  # full-width ALICE
        ("\u3000bob\u3000", "bob"),  # ideographic spaces around it
        ("\u212aim", "kim"),  # KELVIN SIGN folds to K
        ("a.b_c@d-e", "a.b_c@d-e"),
    ],
)
def test_every_spelling_of_a_name_folds_to_one(presented, canonical):
    assert normalize_username(presented) == canonical
    assert username_label(presented) == canonical


@pytest.mark.parametrize(
    "bad", ["ab", "x" * 65, "has space", "semi;colon", "ünï", "", "\ud800bob", None, 42]
)
def test_a_name_no_account_can_have_is_refused_naming_the_rule(bad):
    with pytest.raises(InvalidUsernameError, match="3 to 64 characters"):
        normalize_username(bad)


def test_over_long_input_is_refused_before_it_is_normalised():
    with pytest.raises(InvalidUsernameError):
        normalize_username(" " * MAX_PRESENTED_LENGTH + "alice")


@pytest.mark.parametrize(
    "bad", ["x" * 10_000, "<script>alert(1)</script>", "line\nbreak", "\ud800", "\ufdfa" * 150]
)
def test_a_name_no_account_can_have_is_labelled_by_a_short_digest_never_its_text(bad):
    label = username_label(bad)
    assert label.startswith("~")
    assert len(label) == 33
    assert label.isascii()


def test_spellings_of_one_invalid_name_share_a_label_and_differ_from_others():
    assert username_label("Has Space") == username_label("has space")
    assert username_label("has space") != username_label("has spaces")
