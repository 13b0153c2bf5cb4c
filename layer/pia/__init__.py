"""Shared module of pinpoint-incremental-analytics: rules, events, state, and AWS adapters."""
