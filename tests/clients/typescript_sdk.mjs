// The client matrix's TypeScript SDK 1.x driver (tests/test_client_matrix.py copies it next to
// the cached node_modules and runs it with Node): matrix_steps.mjs in the 2025 era, where
// logs are asked for with logging/setLevel.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { ARGUMENTS, TOOL, callSeen, listSeen, main } from './matrix_steps.mjs';

async function connect(url, key) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  const client = new Client({ name: 'client-matrix', version: '1.0.0' });
  const logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (note) => {
    logs.push(note.params.level);
  });
  await client.connect(transport);
  return {
    protocol: transport.protocolVersion,
    logs,
    call: async () => callSeen(await client.callTool({ name: TOOL, arguments: ARGUMENTS })),
    listTools: () => listSeen(() => client.listTools()),
    askLogs: async (level) => {
      await client.setLoggingLevel(level);
    },
    close: async () => {
      try {
        await transport.terminateSession();
      } catch {
        // the DELETE is counted too and may be rate limited: the session expires anyway
      }
      await client.close();
    },
  };
}

await main(connect);
