"""Numbers for people: grouping, decimals by magnitude, signs, and the exact value kept."""

import pytest

from services.frontend.numbers import amount, exact, percent, quantity, sign_class, signed


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("61333.366666666666666667", "61,333.37"),
        ("1234567.891", "1,234,567.89"),
        ("30000", "30,000.00"),
        ("1.25", "1.25"),
        ("0.5", "0.50"),
        ("0.000123456", "0.0001235"),
        ("0", "0.00"),
        ("-12.5", "\u221212.50"),
        (None, "—"),
        ("not a number", "—"),
    ],
)
def test_amounts_are_grouped_and_rounded_by_magnitude(value, shown):
    assert amount(value) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [("1250.5", "1,250.5"), ("0.5", "0.5"), ("2", "2"), ("0.00012345678", "0.0001235")],
)
def test_quantities_carry_no_padding_zeros(value, shown):
    assert quantity(value) == shown


@pytest.mark.parametrize(
    ("value", "shown", "css"),
    [("4000", "+4,000.00", "gain"), ("-20", "\u221220.00", "loss"), ("0", "0.00", "flat")],
)
def test_pnl_shows_its_sign_and_its_class(value, shown, css):
    assert signed(value) == shown
    assert sign_class(value) == css


def test_a_percentage_has_two_places_and_a_sign():
    assert percent("9.756097") == "+9.76 %"
    assert percent("-3.1") == "\u22123.10 %"


def test_the_exact_value_is_the_apis_without_trailing_zeros():
    assert exact("61333.366666666666666667") == "61333.366666666666666667"
    assert exact("41000.000000000000000000") == "41000"
    assert exact(None) == ""
