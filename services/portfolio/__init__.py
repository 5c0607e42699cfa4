"""The portfolio service: the identity store (`accounts`) and positions and trades
(`trading`) over one database, behind one HTTP app."""
