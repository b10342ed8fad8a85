"""The data layer: numbered plain-SQL migrations, their runner, and the queries the service runs.

Postgres is the system of record. Nothing here imports `pool`, `app` or `workers`.
"""
