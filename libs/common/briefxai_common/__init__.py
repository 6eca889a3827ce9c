"""Shared bootstrap, configuration, logging, metrics, tracing and resilience for BriefXAI services."""
