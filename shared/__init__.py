"""NTBCare's common library: configuration, event schemas, the event store, the outbox relay
and the idempotent consumer that every service builds on."""
