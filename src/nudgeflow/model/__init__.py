"""The shapes shared by all parts: events, profiles, traits."""
