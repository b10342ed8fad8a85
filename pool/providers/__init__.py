"""Where machines come from, behind `pool.core.provider.MachineProvider`: local processes on this
host (`local`, with their on-disk records, process groups, sandbox and cgroup limits) and Fly
Machines (`fly`, over one HTTP client with retries, leases and rate limits shared in Redis by
`fly_budget`). Over `pool.store` and `pool.core`; beside `pool.edits`."""
