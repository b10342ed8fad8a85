"""The realtime gateway: editor and sandbox WebSockets, fanned out across web instances
through Redis (the edit stream orders and persists, pub/sub wakes the instance that holds a
socket). The protocol is docs/protocol.md."""
