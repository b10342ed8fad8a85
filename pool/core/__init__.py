"""Pure decisions and types: no Redis, Postgres, HTTP, statsd or asyncio (import-linter's
`forbidden` contract). The machine states and their legal transitions (`states`), the sizing
policy (`policy`), create backoff, the provider interface (`provider`), errors, log context."""
