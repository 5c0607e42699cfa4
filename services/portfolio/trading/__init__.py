"""Positions and trades: average-cost books per user and symbol, and the REST API the
gateway forwards `/api/portfolio/*` to."""
