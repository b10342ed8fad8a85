"""A session's edits in Redis, the realtime gateway's storage: the bounded edit log with its
epochs, snapshot and fan-out (`edit_log`), and the auto-pipelining of its hot Lua calls
(`script_batcher`). Beside `pool.providers`, over `pool.store`."""
