"""The loops around the pure core: event processing, timers, outbox dispatch (embedded runtime)."""
