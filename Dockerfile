# The gateway image used by docker-compose.yml (both planes; pick one with --role).
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mcp_core ./mcp_core
COPY gateway ./gateway
COPY settings_api ./settings_api
COPY simulator ./simulator
COPY console ./console
# A fixed numeric user: Kubernetes verifies runAsNonRoot against it (deploy/kubernetes/).
RUN pip install --no-cache-dir . && groupadd --system --gid 10001 mcpgw \
    && useradd --system --uid 10001 --gid 10001 --home /var/lib/mcp-gateway mcpgw \
    && mkdir -p /var/lib/mcp-gateway && chown mcpgw /var/lib/mcp-gateway
USER 10001:10001
ENV MCPGW_DATA_DIR=/var/lib/mcp-gateway
EXPOSE 8080
CMD ["mcp-gateway", "serve", "--host", "0.0.0.0", "--port", "8080"]
