"""The pool manager: warm preview machines in Redis, leasing, sizing and machine providers.

Never imports `app` or `workers` (import-linter enforces it).
"""
