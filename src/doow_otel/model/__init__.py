"""The model: what Doow accepts (usage events, usage records, ids, the attribution policy).
No OpenTelemetry, no I/O."""
