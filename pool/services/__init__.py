"""What the workers and the API do with machines, over the store, the providers and the edit
streams, and the Postgres ledger (`sql`): refill and resize, recycle and release (`lifecycle`),
waking a lower tier's machine, on-demand boots, the reaper, the reconciler, rolling guest sizes,
the operator's pool status, metrics."""
