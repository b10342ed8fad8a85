"""The pool's Redis data model: the key schema (`keys`), the Lua scripts that move a machine
between states atomically (`scripts`, `lua/`), leasing, the inventory, the arq job queue and the
store's identity. Imports only `pool.core`."""
