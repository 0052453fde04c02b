'use strict';
// Test doubles and helpers shared by the gateway's tests (kept out of test/,
// where node --test would run them as test files).
const http = require('node:http');
const { once } = require('node:events');
const { createGateway, httpProvider } = require('../src/gateway');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A fake model provider over HTTP.  Each request says how to behave in its
// body's "fake" field: { delayMs, hang, status, tokens }.  It counts calls
// and how many are in flight at once.
async function startFakeProvider() {
  const stats = { calls: 0, inFlight: 0, maxInFlight: 0 };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      const fake = body.fake ?? {};
      stats.calls += 1;
      stats.inFlight += 1;
      stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
      res.on('close', () => { stats.inFlight -= 1; }); // answered, or the gateway gave up
      if (fake.hang) return; // never answers
      setTimeout(() => {
        const status = fake.status ?? 200;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(status >= 400 ? { error: 'the fake provider failed' } : {
          model: 'fake-llm',
          choices: [{ message: { role: 'assistant', content: '42' } }],
          usage: { total_tokens: fake.tokens ?? body.max_tokens ?? 1 },
        }));
      }, fake.delayMs ?? 0);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    stats,
    url: `http://127.0.0.1:${server.address().port}/v1/chat/completions`,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

// A gateway on a free port whose structured log lines are kept in .logs.
async function startGateway(options) {
  const logs = [];
  const server = createGateway({
    log: (record) => logs.push(record),
    ...options,
    provider: options.provider ?? httpProvider(options.providerUrl),
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    logs,
    url: `http://127.0.0.1:${server.address().port}/v1/chat/completions`,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

// One request to the gateway, with an API key (or an X-Team header).
async function ask(url, { key, team, body = {} } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  if (team) headers['x-team'] = team;
  const started = Date.now();
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return {
    status: res.status,
    retryAfter: res.headers.get('retry-after'),
    remaining: res.headers.get('x-quota-remaining'),
    body: json,
    ms: Date.now() - started,
  };
}

async function until(what, check, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

module.exports = { sleep, startFakeProvider, startGateway, ask, until };
