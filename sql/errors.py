"""Errors of the data layer.

    DataError
    ├── DatabaseUnavailable   Postgres could not be reached or failed mid-query
    ├── MigrationError        a migration file failed to apply
    └── LedgerConflict        the machine ledger already holds that (machine, epoch) or an
                              active lease of that machine: another holder (the reaper's fence)
                              won the race. Not pool.providers.fly_client.LeaseConflict, which
                              is Fly's own machine lease.
    └── UnknownReference      a write names a row that does not exist (a flag for a user,
                              project or plan nobody has)

psycopg exceptions are translated into these here, never passed up.
"""


class DataError(RuntimeError):
    pass


class DatabaseUnavailable(DataError):
    pass


class MigrationError(DataError):
    pass


class LedgerConflict(DataError):
    pass


class UnknownReference(DataError):
    pass
