"""LegacyCoinTrader access-layer services."""
