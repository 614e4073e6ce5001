// The client matrix's TypeScript SDK 2.x driver (@modelcontextprotocol/client; copied next to
// the cached node_modules like typescript_sdk.mjs): matrix_steps.mjs with version negotiation
// `auto`, so 2026-07-28, where logs are asked for per request in _meta.
import { Client, LOG_LEVEL_META_KEY, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { ARGUMENTS, TOOL, callSeen, listSeen, main } from './matrix_steps.mjs';

async function connect(url, key) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  const client = new Client(
    { name: 'client-matrix', version: '1.0.0' },
    { versionNegotiation: { mode: 'auto' } },
  );
  const logs = [];
  client.setNotificationHandler('notifications/message', (note) => {
    logs.push(note.params.level);
  });
  await client.connect(transport);
  // The SDK has no client-wide log level: the opt-in is a _meta key of each request.
  let meta;
  return {
    protocol: client.getNegotiatedProtocolVersion(),
    logs,
    call: async () =>
      callSeen(await client.callTool({ name: TOOL, arguments: ARGUMENTS, _meta: meta })),
    // Past the client's response cache (2026-07-28 lists carry ttlMs): to the server.
    listTools: () => listSeen(() => client.listTools(undefined, { cacheMode: 'bypass' })),
    askLogs: async (level) => {
      meta = { [LOG_LEVEL_META_KEY]: level };
    },
    close: () => client.close(),
  };
}

await main(connect);
