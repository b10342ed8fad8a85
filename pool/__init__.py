"""The pool manager: warm preview machines in Redis, leasing, sizing and machine providers.

Four layers, each a sub-package; a layer imports only those below it (import-linter's
`layers` contract), and `core` imports no I/O at all (a `forbidden` contract):

    services/   what the workers and the API do with machines: refill, recycle, wake,
                on-demand boots, reaper, reconciler, pool status, metrics
    providers/  where machines come from: local processes, Fly Machines (with the API's
                rate budget shared in Redis)
    edits/      beside providers: a session's edit stream in Redis, the realtime gateway's
                storage (edit log, script batcher)
    store/      the Redis data model: key schema, Lua scripts, leasing, inventory, job queue
    core/       pure decisions and types: states and their transitions, sizing policy,
                create backoff, the provider interface, errors, log context

Never imports `app` or `workers` (import-linter enforces it).
"""
