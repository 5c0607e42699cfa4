"""The contract every LegacyCoinTrader access-layer service shares."""
