"""Errors of the data layer.

    DataError
    ├── DatabaseUnavailable   Postgres could not be reached or failed mid-query
    ├── MigrationError        a migration file failed to apply
    └── LeaseConflict         the ledger already holds that (machine, epoch) or an active lease
                              of that machine: another holder won the race

psycopg exceptions are translated into these here, never passed up.
"""


class DataError(RuntimeError):
    pass


class DatabaseUnavailable(DataError):
    pass


class MigrationError(DataError):
    pass


class LeaseConflict(DataError):
    pass
