"""Charts drawn on the server: what each SVG says, and nothing unescaped in it."""

from datetime import UTC, datetime
from decimal import Decimal

from services.frontend.charts import Point, Slice, allocation, realised_over_time


def test_allocation_draws_each_share_largest_first():
    svg = str(
        allocation("USD", [Slice("ETH-USD", Decimal("250")), Slice("BTC-USD", Decimal("750"))])
    )
    assert svg.startswith('<svg class="chart" viewBox="0 0 480 ')
    assert svg.index("BTC-USD: 750.00 USD (75.0 %)") < svg.index("ETH-USD: 250.00 USD (25.0 %)")
    assert "75.0 % · 750.00" in svg
    assert 'aria-label="Allocation of the value held in USD"' in svg


def test_a_long_symbol_is_shortened_on_the_chart_but_named_in_full_in_its_tooltip():
    svg = str(allocation("USDT", [Slice("DOGEVERYLONGCOIN-USDT", Decimal("1"))]))
    assert ">DOGEVERYL…</text>" in svg
    assert "<title>DOGEVERYLONGCOIN-USDT: 1.00 USDT (100.0 %)</title>" in svg


def test_an_empty_allocation_says_so():
    assert "Nothing held" in str(allocation("USD", []))


def test_text_in_a_chart_is_escaped():
    svg = str(allocation("USD", [Slice("<b>-USD", Decimal("1"))]))
    assert "<b>" not in svg
    assert "&lt;b&gt;-USD" in svg


def test_realised_pnl_steps_through_each_trade():
    points = [
        Point(datetime(2026, 1, 2, 9, 30, tzinfo=UTC), Decimal("40")),
        Point(datetime(2026, 1, 5, 16, 0, tzinfo=UTC), Decimal("-20")),
    ]
    svg = str(realised_over_time("USD", points))
    assert "+40.00 USD after the trade of 2026-01-02 09:30 UTC" in svg
    assert "\u221220.00 USD after the trade of 2026-01-05 16:00 UTC" in svg
    assert 'class="dot-gain"' in svg
    assert 'class="dot-loss"' in svg
    # UTC dates, each with its moment for the page's script to show in the browser's zone.
    assert 'data-datetime="2026-01-02T09:30:00+00:00">2026-01-02</text>' in svg
    assert 'data-datetime="2026-01-05T16:00:00+00:00">2026-01-05</text>' in svg
    # The axis runs from the lowest to the highest level, zero in between.
    assert ">+40.00</text>" in svg
    assert ">\u221220.00</text>" in svg
    assert ">0</text>" in svg


def test_the_level_holds_until_the_next_trade_then_steps():
    points = [
        Point(datetime(2026, 1, 1, tzinfo=UTC), Decimal("40")),
        Point(datetime(2026, 1, 3, tzinfo=UTC), Decimal("-20")),
    ]
    svg = str(realised_over_time("USD", points))
    # From zero up to +40 at the first trade, flat until the second, then down to -20.
    assert '<path d="M6.0,132.7 H6.0 V34.0 H474.0 V182.0" class="chart-line"/>' in svg
