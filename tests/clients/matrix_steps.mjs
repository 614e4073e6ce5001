// The client matrix's steps on one URL for the TypeScript SDK drivers (typescript_sdk.mjs,
// typescript_sdk2.mjs): the same steps and JSON as matrix_steps.py. A driver passes its SDK's
// `connect(url)`, which resolves to { protocol, call(), listTools(), askLogs(level), logs,
// close() }: `logs` is the array its logging handler pushes each received level to.
export const TOOL = 'search_contacts';
export const ARGUMENTS = { query: 'ada' };
const TRIES = 40; // requests before giving up on meeting the limit
const LOG_LEVEL = 'warning'; // asked for; the stub upstream sends debug, info and warning
const LOG_SETTLE_MS = 200; // SDKs hand notifications to the handler apart from the response
export const RATE_LIMIT_META = 'io.mcpgateway/rateLimit';
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const callSeen = (result) => ({
  isError: Boolean(result.isError),
  text: result.content?.[0]?.text ?? null,
  meta: result._meta ?? null,
});

export async function listSeen(list) {
  try {
    return { tools: (await list()).tools.map((tool) => tool.name) };
  } catch (error) {
    return { code: error.code ?? null, message: String(error.message), data: error.data ?? null };
  }
}

async function logged(peer) {
  peer.logs.length = 0;
  const seen = await peer.call();
  await sleep(LOG_SETTLE_MS);
  return [seen, [...peer.logs]];
}

async function until(request, done) {
  let seen;
  for (let i = 0; i < TRIES; i++) {
    seen = await request();
    if (done(seen)) break;
  }
  return seen;
}

async function steps(peer) {
  const seen = { protocol: peer.protocol ?? null, list: await peer.listTools() };
  [seen.call, seen.logs_unasked] = await logged(peer);
  await peer.askLogs(LOG_LEVEL);
  [seen.logged_call, seen.logs_asked] = await logged(peer);
  const limited = await until(peer.call, (s) => s.isError);
  seen.limited_call = limited;
  await sleep(limited.meta?.[RATE_LIMIT_META]?.retryAfterMs ?? 0);
  seen.retried_call = await peer.call();
  const limitedList = await until(peer.listTools, (s) => 'code' in s);
  seen.limited_request = limitedList;
  await sleep(limitedList.data?.retryAfterMs ?? 0);
  seen.retried_request = await peer.listTools();
  return seen;
}

// Every URL of argv in turn (`key pauseS url...`), the buckets refilling between them; prints
// the runs as one JSON line.
export async function main(connect) {
  const [key, pauseS, ...urls] = process.argv.slice(2);
  const runs = [];
  for (const [index, url] of urls.entries()) {
    if (index) await sleep(Number(pauseS) * 1000);
    const peer = await connect(url, key);
    try {
      runs.push({ url, ...(await steps(peer)) });
    } finally {
      await peer.close();
    }
  }
  console.log(JSON.stringify({ runs }));
}
