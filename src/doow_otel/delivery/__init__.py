"""Delivery: batches on the wire, what each answer means, the spool, HTTP, the client and its
deadline. No OpenTelemetry."""
