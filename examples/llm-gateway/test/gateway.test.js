'use strict';
// Tests of the gateway against a real PostgreSQL with quota installed.
const test = require('node:test');
const assert = require('node:assert/strict');
const { once } = require('node:events');
const { Pool } = require('pg');
const { createGateway } = require('../src/gateway');

const admin = new Pool({ max: 3 });
const app = new Pool({ user: process.env.APP_ROLE ?? 'gateway_app', max: 10 });
let server;
let url;
let upstreamCalls = 0;
let teams = 0;

test.before(async () => {
  const upstream = (req, res) => {
    upstreamCalls += 1;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"answer":"42"}');
  };
  server = createGateway({ pool: app, upstream });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${server.address().port}/v1/chat/completions`;
});

test.after(async () => {
  server.close();
  await Promise.all([admin.end(), app.end()]);
});

async function newTeam(limit, period = '1 day') {
  teams += 1;
  const team = `gw-${process.pid}-${teams}`;
  await admin.query('SELECT quota.set_account($1, $2, period => $3::interval)', [team, limit, period]);
  return team;
}

async function ask(team) {
  const calls = upstreamCalls;
  const res = await fetch(url, { method: 'POST', headers: team ? { 'x-team': team } : {}, body: '{}' });
  return {
    status: res.status,
    retryAfter: res.headers.get('retry-after'),
    body: await res.json(),
    forwarded: upstreamCalls - calls,
  };
}

async function secondsToReset(team) {
  const { rows } = await admin.query(
    'SELECT extract(epoch FROM resets_at - clock_timestamp())::float8 AS s FROM quota.usage WHERE team = $1',
    [team],
  );
  return rows[0].s;
}

test('a team with credits left goes upstream', async () => {
  const team = await newTeam(2);
  await admin.query('SELECT quota.charge_credit($1)', [team]);
  const res = await ask(team);
  assert.deepEqual([res.status, res.forwarded, res.body], [200, 1, { answer: '42' }]);
});

test('a limited team gets 429 with Retry-After from quota.usage.resets_at, and nothing goes upstream', async () => {
  const team = await newTeam(2);
  await admin.query('SELECT quota.charge_credit($1, 2)', [team]);
  const res = await ask(team);
  assert.equal(res.status, 429);
  assert.equal(res.forwarded, 0);
  const expected = await secondsToReset(team);
  const retryAfter = Number(res.retryAfter);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${res.retryAfter}`);
  assert.ok(Math.abs(retryAfter - expected) <= 2, `Retry-After ${retryAfter}, resets in ${expected} s`);
  const { rows } = await admin.query('SELECT resets_at FROM quota.usage WHERE team = $1', [team]);
  assert.equal(res.body.resetsAt, rows[0].resets_at.toISOString());
});

test('open holds count: a team whose credits are all reserved is limited', async () => {
  const team = await newTeam(3);
  await admin.query('SELECT quota.reserve_credit($1, 3)', [team]);
  assert.equal((await ask(team)).status, 429);
});

test('a budget that never resets gets 429 without Retry-After', async () => {
  teams += 1;
  const team = `gw-${process.pid}-${teams}`;
  await admin.query('SELECT quota.set_account($1, 0)', [team]);
  const res = await ask(team);
  assert.deepEqual([res.status, res.retryAfter, res.forwarded], [429, null, 0]);
});

test('once the window rolls over the team is let through again', async () => {
  const team = await newTeam(1, '1 second');
  await admin.query('SELECT quota.charge_credit($1)', [team]);
  const limited = await ask(team);
  assert.equal(limited.status, 429);
  assert.equal(limited.retryAfter, '1');
  const wait = Math.ceil((await secondsToReset(team)) * 1000) + 50;
  await new Promise((resolve) => setTimeout(resolve, wait));
  assert.equal((await ask(team)).status, 200);
});

test('the check never waits for a writer holding the account row', async () => {
  const team = await newTeam(1);
  const writer = await admin.connect();
  try {
    await writer.query('BEGIN');
    await writer.query('SELECT quota.charge_credit($1)', [team]); // row locked, not committed
    const started = Date.now();
    const res = await ask(team);
    assert.equal(res.status, 200, 'the uncommitted spend is not visible yet');
    assert.ok(Date.now() - started < 2000);
    await writer.query('COMMIT');
    assert.equal((await ask(team)).status, 429);
  } finally {
    writer.release();
  }
});

test('unknown teams and requests without a team are refused', async () => {
  const unknown = await ask('no-such-team');
  const anonymous = await ask(null);
  assert.deepEqual([unknown.status, unknown.forwarded], [403, 0]);
  assert.deepEqual([anonymous.status, anonymous.forwarded], [401, 0]);
});
