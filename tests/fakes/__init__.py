"""Fakes for what cannot run here. There is one: the Fly Machines API (fly_api), which follows
the official OpenAPI document and the behaviour notes in ../shared/fly/ and validates every
request it receives against that document."""
