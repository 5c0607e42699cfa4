"""The headless Chromium fixtures of tests/frontend/test_browser.py, for the tests here."""

from tests.frontend.test_browser import browser, frontend_url, page  # noqa: F401
