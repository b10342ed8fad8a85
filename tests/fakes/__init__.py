"""Fakes for what cannot run here. There is one: the Fly Machines API (fly_api), which follows
the official OpenAPI document (stored in tests/fakes/fly/) and the workplace's notes on Fly's real
behaviour (../shared/fly/machines-api-research.md), and validates every
request it receives against that document."""
