"""Operations: Prometheus metrics, JSON logs and the per-request log line.

- `metrics`: every metric family, pre-bound label children, and the `/metrics` handler;
- `logs`: the JSON and text log formats, `configure_logging`, the request-id context;
- `middleware`: one middleware that times each request, counts it, and writes its log line.
- `tracing`: OpenTelemetry spans of the MCP endpoints and callUrl's upstream calls (off unless
  an OTLP endpoint is configured).

Import the submodules directly (this package imports nothing, so low layers such as the rate
limiter can import `gateway.observability.metrics` without cycles).
"""
