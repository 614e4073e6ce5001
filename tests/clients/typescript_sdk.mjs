// The client matrix's TypeScript SDK driver (tests/test_client_matrix.py copies it next to the
// cached node_modules and runs it with Node): the same steps as python_sdk1.py, the same JSON.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const TOOL = 'search_contacts';
const ARGUMENTS = { query: 'ada' };
const TRIES = 40;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const callSeen = (result) => ({
  isError: Boolean(result.isError),
  text: result.content?.[0]?.text ?? null,
  meta: result._meta ?? null,
});

async function listSeen(client) {
  try {
    return { tools: (await client.listTools()).tools.map((tool) => tool.name) };
  } catch (error) {
    return { code: error.code ?? null, message: String(error.message), data: error.data ?? null };
  }
}

async function run(url, key) {
  const seen = { url };
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  const client = new Client({ name: 'client-matrix', version: '1.0.0' });
  await client.connect(transport);
  seen.protocol = transport.protocolVersion ?? null;
  seen.list = await listSeen(client);
  seen.call = callSeen(await client.callTool({ name: TOOL, arguments: ARGUMENTS }));
  let limited;
  for (let i = 0; i < TRIES; i++) {
    limited = callSeen(await client.callTool({ name: TOOL, arguments: ARGUMENTS }));
    if (limited.isError) break;
  }
  seen.limited_call = limited;
  await sleep(limited.meta?.['io.mcpgateway/rateLimit']?.retryAfterMs ?? 0);
  seen.retried_call = callSeen(await client.callTool({ name: TOOL, arguments: ARGUMENTS }));
  let limitedList;
  for (let i = 0; i < TRIES; i++) {
    limitedList = await listSeen(client);
    if ('code' in limitedList) break;
  }
  seen.limited_request = limitedList;
  await sleep(limitedList.data?.retryAfterMs ?? 0);
  seen.retried_request = await listSeen(client);
  try {
    await transport.terminateSession();
  } catch (error) {
    seen.terminate = error.code ?? String(error); // the DELETE is counted too: may be limited
  }
  await client.close();
  return seen;
}

const [key, pauseS, ...urls] = process.argv.slice(2);
const runs = [];
for (const [index, url] of urls.entries()) {
  if (index) await sleep(Number(pauseS) * 1000); // the buckets refill between URLs
  runs.push(await run(url, key));
}
console.log(JSON.stringify({ runs }));
