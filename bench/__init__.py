"""`python -m bench` (`make bench`): the gateway against nginx on the same stub upstream."""
