"""Alerts: the rules in one place (pure: events in, alerts out, event time), their persistence and
their delivery through apprise (Telegram, Discord, e-mail, ...), and the daily summary."""
