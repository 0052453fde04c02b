'use strict';
// Tests of the chat backend against a real PostgreSQL with quota installed.
// The backend connects as the application role (USAGE on schema quota only);
// the tests set budgets up and read them back as the database owner.
const test = require('node:test');
const assert = require('node:assert/strict');
const { once } = require('node:events');
const { Pool } = require('pg');
const { Credits } = require('../src/credits');
const { createFakeModel } = require('../src/model');
const { createChatServer } = require('../src/server');

const admin = new Pool({ max: 2 });
const app = new Pool({ user: process.env.APP_ROLE ?? 'chat_app', max: 60 });
let server;
let url;
let teams = 0;

test.before(async () => {
  server = createChatServer({ credits: new Credits(app), model: createFakeModel({ slowMs: 20 }) });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${server.address().port}/chat`;
});

test.after(async () => {
  server.close();
  await Promise.all([admin.end(), app.end()]);
});

// A fresh team with its own monthly budget.
async function newTeam(limit, { unlimited = false } = {}) {
  teams += 1;
  const team = `team-${process.pid}-${teams}`;
  await admin.query(
    "SELECT quota.set_account($1, $2, period => '1 month', anchor => '2026-01-01 00:00+00', unlimited => $3)",
    [team, limit, unlimited],
  );
  return team;
}

async function usage(team) {
  const { rows } = await admin.query(
    'SELECT used::int, held::int, credit_limit::int, resets_at FROM quota.usage WHERE team = $1',
    [team],
  );
  return rows[0];
}

async function holds(team) {
  const { rows } = await admin.query(
    'SELECT state, count(*)::int AS n FROM quota.holds WHERE team = $1 GROUP BY state ORDER BY state',
    [team],
  );
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}

async function chat(team, prompt = 'hello') {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify({ team, prompt }) });
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

const lines = (text) => text.trim().split('\n').map((line) => JSON.parse(line));

test('a granted request streams the reply and commits one credit', async () => {
  const team = await newTeam(3);
  const res = await chat(team, 'tell me a joke');
  assert.equal(res.status, 200);
  assert.equal(res.type, 'application/x-ndjson');
  const events = lines(res.text);
  assert.equal(events.map((e) => e.token ?? '').join(''), 'You said: tell me a joke ');
  const last = events.at(-1);
  assert.deepEqual({ done: last.done, creditsUsed: last.creditsUsed, creditsLimit: last.creditsLimit }, {
    done: true, creditsUsed: 1, creditsLimit: 3,
  });
  const now = await usage(team);
  assert.deepEqual([now.used, now.held, now.credit_limit], [1, 0, 3]);
  assert.deepEqual(await holds(team), { committed: 1 });
});

test('a denied request gets 402 with creditsUsed, creditsLimit and resetsAt before any streaming', async () => {
  const team = await newTeam(1);
  assert.equal((await chat(team)).status, 200);
  const res = await chat(team);
  assert.equal(res.status, 402);
  assert.equal(res.type, 'application/json');
  const body = JSON.parse(res.text);
  const now = await usage(team);
  assert.deepEqual(body, { creditsUsed: 1, creditsLimit: 1, resetsAt: now.resets_at.toISOString() });
  assert.equal(now.used, 1);
  assert.deepEqual(await holds(team), { committed: 1 });
});

test('a model that fails before answering costs nothing: 502 and the hold is released', async () => {
  const team = await newTeam(2);
  const res = await chat(team, 'fail please');
  assert.equal(res.status, 502);
  assert.deepEqual(JSON.parse(res.text), { error: 'the model failed; no credit was spent' });
  const now = await usage(team);
  assert.deepEqual([now.used, now.held], [0, 0]);
  assert.deepEqual(await holds(team), { released: 1 });
});

test('a model that fails mid-stream costs nothing: the stream ends with an error and the hold is released', async () => {
  const team = await newTeam(2);
  const res = await chat(team, 'fail midway');
  assert.equal(res.status, 200);
  const events = lines(res.text);
  assert.deepEqual(events.at(-1), { error: 'the model failed; no credit was spent' });
  const now = await usage(team);
  assert.deepEqual([now.used, now.held], [0, 0]);
  assert.deepEqual(await holds(team), { released: 1 });
});

test('a client that hangs up mid-stream costs nothing', async () => {
  const team = await newTeam(2);
  const controller = new AbortController();
  const res = await fetch(url, {
    method: 'POST', body: JSON.stringify({ team, prompt: 'slow and rather long reply to abandon' }),
    signal: controller.signal,
  });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  await reader.read(); // the first token
  controller.abort();
  // The server notices at its next token; wait for the hold to be released.
  for (let i = 0; i < 100 && (await holds(team)).released !== 1; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.deepEqual(await holds(team), { released: 1 });
  assert.equal((await usage(team)).used, 0);
});

test('50 concurrent requests against a limit of 10: exactly 10 are answered', async () => {
  const team = await newTeam(10);
  const results = await Promise.all(Array.from({ length: 50 }, () => chat(team, 'slow answer')));
  const statuses = results.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 10);
  assert.equal(statuses.filter((s) => s === 402).length, 40);
  for (const r of results.filter((x) => x.status === 402)) {
    const body = JSON.parse(r.text);
    assert.equal(body.creditsLimit, 10);
    assert.ok(body.creditsUsed <= 10);
  }
  const now = await usage(team);
  assert.deepEqual([now.used, now.held], [10, 0]);
  assert.deepEqual(await holds(team), { committed: 10 });
});

test('an unlimited team is always answered and still metered', async () => {
  const team = await newTeam(0, { unlimited: true });
  const results = await Promise.all(Array.from({ length: 5 }, () => chat(team)));
  assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200]);
  const last = lines(results[0].text).at(-1);
  assert.equal(last.creditsLimit, null);
  assert.equal((await usage(team)).used, 5);
});

test('unknown teams and malformed requests are refused without touching any budget', async () => {
  assert.equal((await chat('no-such-team')).status, 404);
  const res = await fetch(url, { method: 'POST', body: 'not json' });
  assert.equal(res.status, 400);
  const missing = await fetch(url, { method: 'POST', body: JSON.stringify({ prompt: 'hi' }) });
  assert.equal(missing.status, 400);
  const { rows } = await admin.query("SELECT count(*)::int AS n FROM quota.accounts WHERE team = 'no-such-team'");
  assert.equal(rows[0].n, 0);
});

test('the application role cannot raise its own limit', async () => {
  const team = await newTeam(1);
  await assert.rejects(app.query('SELECT quota.set_account($1, 1000)', [team]), { code: '42501' });
  await assert.rejects(app.query('UPDATE quota.accounts SET credit_limit = 1000'), { code: '42501' });
  assert.equal((await usage(team)).credit_limit, 1);
});
