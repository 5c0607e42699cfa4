"""The trade book: symbols, exact decimals stored, one transaction, idempotency keys, pages."""

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select

from services.portfolio.errors import (
    IdempotencyKeyReusedError,
    InsufficientPositionError,
    InvalidTradeError,
    PositionNotFoundError,
)
from services.portfolio.trading import store
from services.portfolio.trading.models import Position, Trade
from services.portfolio.trading.schemas import TradeIn, canonical_symbol
from services.portfolio.trading.service import TradeBook, check_idempotency_key, parse_cursor
from shared.clock import utcnow

D = Decimal


def order(side: str = "buy", quantity: str = "1", price: str = "100", symbol: str = "BTC-USD"):
    return TradeIn.model_validate(
        {"symbol": symbol, "side": side, "quantity": quantity, "price": price}
    )


@pytest.fixture
def book(database) -> TradeBook:
    return TradeBook(database)


async def count(database, model) -> int:
    async with database.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


# Symbols and keys.


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("BTC-USD", "BTC-USD"),
        ("eth/usdt", "ETH-USDT"),
        (" sol-eur ", "SOL-EUR"),
        ("1INCH/USDT", "1INCH-USDT"),
    ],
)
def test_symbols_are_normalised_to_upper_case_base_dash_quote(raw, canonical):
    assert canonical_symbol(raw) == canonical


@pytest.mark.parametrize(
    "raw", ["BTC", "BTC-", "-USD", "BTC_USD", "BTC-USD-X", "BTC-BTC", "B" * 21 + "-USD", "BTC USD"]
)
def test_malformed_symbols_are_refused(raw):
    with pytest.raises(ValueError, match="trading pair"):
        canonical_symbol(raw)


@pytest.mark.parametrize("key", ["a", "k" * 200, "2f1c-uuid-like key ~!"])
def test_idempotency_keys_of_1_to_200_printable_characters_are_accepted(key):
    assert check_idempotency_key(key) == key


@pytest.mark.parametrize("key", ["", "k" * 201, "tab\tkey", "caf\u00e9"])
def test_other_idempotency_keys_are_refused_naming_the_header(key):
    with pytest.raises(InvalidTradeError) as caught:
        check_idempotency_key(key)
    assert caught.value.field == "Idempotency-Key"


# The trade book on each database.


async def test_a_trade_and_its_position_are_stored_with_exact_decimals(book, database):
    tiny, huge = "0.000000000000000001", "999999999999999.999999999999999999"
    await book.record_trade("alice", order("buy", quantity=tiny, price=huge))
    position = await book.position("alice", "btc/usd")
    assert position.quantity == D(tiny)
    assert position.last_price == D(huge)
    async with database.sessions() as session:
        stored = (await session.scalars(select(Trade))).one()
    assert (stored.quantity, stored.price) == (D(tiny), D(huge))


async def test_the_largest_storable_amounts_round_trip(database):
    largest = D("99999999999999999999.999999999999999999")
    async with database.sessions.begin() as session:
        row = await store.lock_position(session, username="alice", symbol="BTC-USD", now=utcnow())
        row.cost_basis, row.realized_pnl = largest, largest.copy_negate()
    async with database.sessions() as session:
        stored = await store.get_position(session, username="alice", symbol="BTC-USD")
    assert stored is not None
    assert (stored.cost_basis, stored.realized_pnl) == (largest, largest.copy_negate())


async def test_a_refused_sell_leaves_no_trade_and_no_position(book, database):
    with pytest.raises(InsufficientPositionError):
        await book.record_trade("alice", order("sell"))
    assert await count(database, Trade) == 0
    assert await count(database, Position) == 0


async def test_a_failed_trade_insert_leaves_the_position_unchanged(book, database):
    await book.record_trade("alice", order("buy", "2", "100"))

    def fail(*_args):
        raise RuntimeError("the disk filled up")

    event.listen(Trade, "before_insert", fail)
    try:
        with pytest.raises(RuntimeError):
            await book.record_trade("alice", order("buy", "5", "200"))
    finally:
        event.remove(Trade, "before_insert", fail)
    position = await book.position("alice", "BTC-USD")
    assert (position.quantity, position.cost_basis, position.trade_count) == (D(2), D(200), 1)
    assert await count(database, Trade) == 1


async def test_positions_and_trades_belong_to_their_user(book):
    await book.record_trade("alice", order("buy", "1", "100"))
    await book.record_trade("bob", order("buy", "3", "90"))
    assert [p.quantity for p in await book.positions("alice")] == [D(1)]
    assert [t.quantity for t in (await book.trades("bob", limit=10)).trades] == [D(3)]
    with pytest.raises(InsufficientPositionError):
        await book.record_trade("alice", order("sell", "2", "100"))


async def test_a_closed_position_is_not_open_but_keeps_its_realised_pnl(book):
    await book.record_trade("alice", order("buy", "2", "100"))
    await book.record_trade("alice", order("sell", "2", "125"))
    assert await book.positions("alice") == []
    with pytest.raises(PositionNotFoundError):
        await book.position("alice", "BTC-USD")
    (closed,) = (await book.summary("alice")).positions
    assert (closed.quantity, closed.cost_basis, closed.realized_pnl) == (D(0), D(0), D(50))


async def test_the_same_idempotency_key_books_once_and_replays(book, database):
    first = await book.record_trade("alice", order("buy", "1", "100"), idempotency_key="k-1")
    again = await book.record_trade("alice", order("buy", "1.0", "100.00"), idempotency_key="k-1")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.trade == first.trade
    assert await count(database, Trade) == 1


async def test_an_idempotency_key_reused_for_a_different_trade_is_refused(book, database):
    await book.record_trade("alice", order("buy", "1", "100"), idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReusedError):
        await book.record_trade("alice", order("buy", "2", "100"), idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReusedError):
        await book.record_trade(
            "alice", order("buy", "1", "100", symbol="ETH-USD"), idempotency_key="k-1"
        )
    assert await count(database, Trade) == 1


async def test_idempotency_keys_are_per_user_and_absent_keys_never_replay(book, database):
    await book.record_trade("alice", order(), idempotency_key="shared")
    bob = await book.record_trade("bob", order(), idempotency_key="shared")
    await book.record_trade("alice", order())
    await book.record_trade("alice", order())
    assert bob.replayed is False
    assert await count(database, Trade) == 4


async def test_racing_requests_with_one_key_book_once(book, database):
    receipts = await asyncio.gather(
        *(book.record_trade("alice", order(), idempotency_key="race") for _ in range(8))
    )
    assert sorted(r.replayed for r in receipts) == [False] + [True] * 7
    assert len({r.trade.id for r in receipts}) == 1
    assert (await book.position("alice", "BTC-USD")).quantity == D(1)
    assert await count(database, Trade) == 1


async def test_racing_requests_with_one_key_for_different_symbols_book_once(book, database):
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD"]
    results = await asyncio.gather(
        *(book.record_trade("alice", order(symbol=s), idempotency_key="race") for s in symbols),
        return_exceptions=True,
    )
    booked = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(booked) == 1
    assert all(isinstance(r, IdempotencyKeyReusedError) for r in refused)
    assert len(await book.positions("alice")) == 1
    assert await count(database, Trade) == 1


async def test_trade_pages_run_newest_first_without_gaps_or_repeats(book):
    for price in range(1, 8):
        await book.record_trade("alice", order("buy", "1", str(price)))
    await book.record_trade("bob", order("buy", "1", "99"))
    seen: list[Decimal] = []
    sizes: list[int] = []
    cursor = None
    while True:
        page = await book.trades("alice", limit=3, cursor=cursor)
        sizes.append(len(page.trades))
        seen.extend(t.price for t in page.trades)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sizes == [3, 3, 1]
    assert seen == [D(p) for p in range(7, 0, -1)]


async def test_trade_pages_filter_by_symbol(book):
    await book.record_trade("alice", order(symbol="BTC-USD"))
    await book.record_trade("alice", order(symbol="ETH/USD"))
    page = await book.trades("alice", limit=50, symbol="eth-usd")
    assert [t.symbol for t in page.trades] == ["ETH-USD"]
    assert page.next_cursor is None


@pytest.mark.parametrize("cursor", ["0", "-1", "abc", "1" * 20])
def test_a_cursor_that_no_page_returned_is_refused(cursor):
    with pytest.raises(InvalidTradeError) as caught:
        parse_cursor(cursor)
    assert caught.value.field == "cursor"
