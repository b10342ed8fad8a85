"""The sandbox agent: what runs inside a preview machine.

It keeps a workspace (a template's project files plus the template's shared node_modules),
supervises the template's dev server (Vite), applies the orchestrator's snapshots and patches
to the workspace exactly once and in order, tells the orchestrator when the dev server has
picked each one up, and forwards build errors and console output. It ships alone in the
machine image: the standard library and `websockets`, nothing from the server side.

Modules: `main` (entry point), `agent` (orchestrator frames and the tasks), `link` (the
orchestrator socket), `protocol` (frames), `files` + `paths` (safe writes), `state` (resume
point), `devserver` (Vite supervision), `monitor` (status, build errors, confirmations), `hmr`
(Vite's HMR socket), `acks` + `pacing` (when a write counts as applied, when the next may go),
`probe` (requests a browser would make), `front` (/healthz and the proxy to Vite), `logs`,
`stats` + `usage` (the machine's own report: dev-server restarts, CPU and memory),
`installer`, `deps` and `npm` (package.json's dependencies installed in the machine).
"""
