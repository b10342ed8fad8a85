"""Browser tests of the whole stack (tests/e2e/conftest.py)."""
