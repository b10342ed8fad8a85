"""Errors of the pool manager.

    PoolError
    ├── PoolUnavailable        Redis could not be reached or answered with an error
    ├── UnknownMachine         no record of that machine
    ├── MalformedEnvelope      a pub/sub message that is no envelope of ours
    └── ProviderError          a machine provider failed
        ├── MachineNotFound    the provider has no such machine
        └── CapacityExhausted  the provider cannot create more machines right now

Redis and provider-specific exceptions are translated into these at the boundary.
"""


class PoolError(RuntimeError):
    pass


class PoolUnavailable(PoolError):
    pass


class UnknownMachine(PoolError):
    pass


class MalformedEnvelope(PoolError):
    pass


class ProviderError(PoolError):
    pass


class MachineNotFound(ProviderError):
    pass


class CapacityExhausted(ProviderError):
    pass
