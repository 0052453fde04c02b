'use strict';
// The metered path: API keys that spend on a key > team > org chain, with a
// per-key cap on requests in flight.  The gateway connects as the
// application role (USAGE on schema quota only); the tests set budgets up
// and read them back as the superuser.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Pool } = require('pg');
const { keyAccount } = require('../src/gateway');
const { sleep, startFakeProvider, startGateway, ask, until } = require('../test-lib/fakes');

const admin = new Pool({ max: 3 });
const app = new Pool({ user: process.env.APP_ROLE ?? 'gateway_app', max: 10 });
let provider;
let gateway; // defaults: timeout 10 s, hold_for 30 s
let chains = 0;

// Every statement the gateway sends.
const statements = [];
const query = app.query.bind(app);
app.query = (...args) => {
  statements.push(typeof args[0] === 'string' ? args[0] : args[0].text);
  return query(...args);
};

test.before(async () => {
  provider = await startFakeProvider();
  gateway = await startGateway({ pool: app, providerUrl: provider.url, timeoutMs: 10000, holdForMs: 30000 });
});

test.after(async () => {
  gateway.close();
  provider.close();
  await Promise.all([admin.end(), app.end()]);
});

// org > team > key, each with its own limit (and period, NULL: never resets);
// cap: the key's max_open_holds.  Returns the names and the key's secret.
async function newChain({
  org = 100000, team = 10000, key = 1000, orgPeriod = null, teamPeriod = null, keyPeriod = null, cap = null,
} = {}) {
  chains += 1;
  const id = `${process.pid}-${chains}`;
  const chain = { org: `org-${id}`, team: `team-${id}`, secret: `sk-test-${id}-${Math.random().toString(36).slice(2)}` };
  chain.key = keyAccount(chain.secret);
  const account = 'SELECT quota.set_account($1, $2, period => $3::interval)';
  await admin.query(account, [chain.org, org, orgPeriod]);
  await admin.query(account, [chain.team, team, teamPeriod]);
  await admin.query(account, [chain.key, key, keyPeriod]);
  await admin.query('SELECT quota.set_parent($1, $2)', [chain.team, chain.org]);
  await admin.query('SELECT quota.set_parent($1, $2)', [chain.key, chain.team]);
  if (cap !== null) await admin.query('SELECT quota.set_concurrency($1, $2)', [chain.key, cap]);
  return chain;
}

async function usage(...teams) {
  const { rows } = await admin.query(
    'SELECT team, used::int, held::int FROM quota.usage WHERE team = ANY($1)',
    [teams],
  );
  const byTeam = Object.fromEntries(rows.map((r) => [r.team, [r.used, r.held]]));
  return teams.map((t) => byTeam[t]);
}

async function secondsToReset(team) {
  const { rows } = await admin.query(
    'SELECT extract(epoch FROM resets_at - clock_timestamp())::float8 AS s FROM quota.usage WHERE team = $1',
    [team],
  );
  return rows[0].s;
}

function assertRetryAfter(res, expected, slack) {
  const retryAfter = Number(res.retryAfter);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${res.retryAfter}`);
  assert.ok(Math.abs(retryAfter - expected) <= slack, `Retry-After ${retryAfter}, expected about ${expected}`);
  assert.equal(res.body.retryAfter, retryAfter);
}

test('a key spends on key, team and org at once: one reserve, one commit of what the provider used', async () => {
  const chain = await newChain();
  statements.length = 0;
  const res = await ask(gateway.url, { key: chain.secret, body: { max_tokens: 50, fake: { tokens: 30 } } });
  assert.equal(res.status, 200);
  assert.equal(res.body.usage.total_tokens, 30);
  assert.equal(res.remaining, '970', 'the least remaining over the chain');
  assert.deepEqual(await usage(chain.key, chain.team, chain.org), [[30, 0], [30, 0], [30, 0]]);
  assert.equal(statements.length, 2);
  assert.match(statements[0], /quota\.reserve_credit/);
  assert.match(statements[1], /quota\.commit_credit/);
  // Either header names the key; the secret itself never reaches the database.
  const viaHeader = await fetch(gateway.url, { method: 'POST', headers: { 'x-api-key': chain.secret }, body: '{"max_tokens":5}' });
  assert.equal(viaHeader.status, 200);
  assert.ok(statements.every((s) => !s.includes(chain.secret)));
});

test("the org's budget is enforced on a user key: 429 with the org's Retry-After though key and team have credits", async () => {
  const chain = await newChain({ org: 100, orgPeriod: '1 day', teamPeriod: '1 hour' });
  await admin.query('SELECT quota.charge_credit($1, 95)', [chain.org]); // spent elsewhere in the org
  const calls = provider.stats.calls;
  const denied = await ask(gateway.url, { key: chain.secret, body: { max_tokens: 10 } });
  assert.equal(denied.status, 429);
  assert.deepEqual(denied.body.deniedBy, { account: chain.org, level: 'org', reason: 'credits', remaining: 5 });
  assertRetryAfter(denied, await secondsToReset(chain.org), 2);
  assert.equal(provider.stats.calls, calls, 'nothing went upstream');
  assert.deepEqual(await usage(chain.key, chain.team, chain.org), [[0, 0], [0, 0], [95, 0]], 'nothing held anywhere');
  // What still fits in the org goes through, and counts on all three.
  const fits = await ask(gateway.url, { key: chain.secret, body: { max_tokens: 5 } });
  assert.equal(fits.status, 200);
  assert.deepEqual(await usage(chain.key, chain.team, chain.org), [[5, 0], [5, 0], [100, 0]]);
  assert.equal((await ask(gateway.url, { key: chain.secret, body: { max_tokens: 1 } })).status, 429);
});

test("a team's limit is enforced on its keys, with the team's Retry-After", async () => {
  const chain = await newChain({ team: 20, teamPeriod: '1 hour', orgPeriod: '1 month' });
  assert.equal((await ask(gateway.url, { key: chain.secret, body: { max_tokens: 15 } })).status, 200);
  const denied = await ask(gateway.url, { key: chain.secret, body: { max_tokens: 10 } });
  assert.equal(denied.status, 429);
  assert.deepEqual(denied.body.deniedBy, { account: chain.team, level: 'team', reason: 'credits', remaining: 5 });
  assertRetryAfter(denied, await secondsToReset(chain.team), 2);
  assert.ok(Number(denied.retryAfter) > 3000 && Number(denied.retryAfter) <= 3600);
});

test('a denying budget that never resets: 429 without Retry-After', async () => {
  const chain = await newChain({ key: 5, teamPeriod: '1 hour', orgPeriod: '1 day' });
  const denied = await ask(gateway.url, { key: chain.secret, body: { max_tokens: 10 } });
  assert.equal(denied.status, 429);
  assert.equal(denied.retryAfter, null);
  assert.deepEqual(denied.body.deniedBy, { account: chain.key, level: 'key', reason: 'credits', remaining: 5 });
});

test('an upstream failure releases the hold on the whole chain', async () => {
  const chain = await newChain();
  const res = await ask(gateway.url, { key: chain.secret, body: { max_tokens: 40, fake: { status: 500 } } });
  assert.equal(res.status, 502);
  assert.deepEqual(await usage(chain.key, chain.team, chain.org), [[0, 0], [0, 0], [0, 0]]);
  const { rows } = await admin.query('SELECT state FROM quota.holds WHERE team = $1', [chain.key]);
  assert.deepEqual(rows, [{ state: 'released' }]);
});

test('unknown keys get 403, bad bodies 400, and nothing is reserved', async () => {
  assert.equal((await ask(gateway.url, { key: 'sk-nobody' })).status, 403);
  const chain = await newChain();
  assert.equal((await ask(gateway.url, { key: chain.secret, body: { max_tokens: -1 } })).status, 400);
  const broken = await fetch(gateway.url, { method: 'POST', headers: { 'x-api-key': chain.secret }, body: '{oops' });
  assert.equal(broken.status, 400);
  assert.deepEqual(await usage(chain.key), [[0, 0]]);
});

test('a request that times out never commits; its place on a cap of 1 frees itself when the hold expires', async () => {
  const short = await startGateway({ pool: app, providerUrl: provider.url, timeoutMs: 500, holdForMs: 2000 });
  try {
    const chain = await newChain({ cap: 1 });
    const hung = await ask(short.url, { key: chain.secret, body: { max_tokens: 10, fake: { hang: true } } });
    assert.equal(hung.status, 504);
    assert.ok(hung.ms >= 450, `gave up after ${hung.ms} ms`);
    assert.deepEqual(await usage(chain.key, chain.team, chain.org), [[0, 10], [0, 10], [0, 10]], 'held, not committed');
    assert.ok(short.logs.some((l) => l.event === 'upstream_timeout' && l.account === chain.key));

    const { rows: [hold] } = await admin.query(
      `SELECT expires_at, extract(epoch FROM expires_at - clock_timestamp())::float8 AS s
         FROM quota.holds WHERE team = $1 AND state = 'open'`, [chain.key]);
    const denied = await ask(short.url, { key: chain.secret, body: { max_tokens: 10 } });
    assert.equal(denied.status, 429);
    assert.deepEqual(denied.body.deniedBy, { account: chain.key, level: 'key', reason: 'concurrency', maxOpenHolds: 1 });
    assertRetryAfter(denied, hold.s, 1);
    assert.ok(Number(denied.retryAfter) <= 2);

    // No cleanup by anyone: once the hold has expired the key is let in again.
    await sleep(Math.max(0, hold.expires_at.getTime() - Date.now()) + 100);
    const admitted = await ask(short.url, { key: chain.secret, body: { max_tokens: 10, fake: { tokens: 7 } } });
    assert.equal(admitted.status, 200);
    assert.deepEqual(await usage(chain.key, chain.team, chain.org), [[7, 0], [7, 0], [7, 0]],
      'the timed-out request was never committed; its expired hold no longer counts');
  } finally {
    short.close();
  }
});

test('20 concurrent requests on a key capped at 3 with a slow provider: exactly 3 go upstream', async () => {
  const chain = await newChain({ cap: 3 });
  const before = { calls: provider.stats.calls };
  provider.stats.maxInFlight = 0;
  const replies = await Promise.all(Array.from({ length: 20 }, () => ask(gateway.url, {
    key: chain.secret, body: { max_tokens: 10, fake: { delayMs: 1500 } },
  })));
  const statuses = replies.map((r) => r.status).sort();
  assert.deepEqual(statuses, [...Array(3).fill(200), ...Array(17).fill(429)]);
  assert.equal(provider.stats.calls - before.calls, 3);
  assert.equal(provider.stats.maxInFlight, 3);
  for (const denied of replies.filter((r) => r.status === 429)) {
    assert.equal(denied.body.deniedBy?.reason, 'concurrency');
    const retryAfter = Number(denied.retryAfter);
    assert.ok(retryAfter >= 28 && retryAfter <= 30, `Retry-After ${denied.retryAfter}: until the earliest hold expires`);
  }
  assert.deepEqual(await usage(chain.key, chain.team, chain.org), [[30, 0], [30, 0], [30, 0]]);
  assert.equal((await ask(gateway.url, { key: chain.secret, body: { max_tokens: 10 } })).status, 200, 'places free again');
});

test("a cap on the team counts requests in flight through any of its keys", async () => {
  const first = await newChain();
  const second = await newChain();
  await admin.query('SELECT quota.set_parent($1, $2)', [second.key, first.team]);
  await admin.query('SELECT quota.set_concurrency($1, 1)', [first.team]);
  const inFlight = provider.stats.inFlight;
  const slow = ask(gateway.url, { key: first.secret, body: { max_tokens: 1, fake: { delayMs: 800 } } });
  await until('the slow request to reach the provider', () => provider.stats.inFlight > inFlight);
  const denied = await ask(gateway.url, { key: second.secret, body: { max_tokens: 1 } });
  assert.equal(denied.status, 429);
  assert.deepEqual(denied.body.deniedBy, { account: first.team, level: 'team', reason: 'concurrency', maxOpenHolds: 1 });
  assert.equal((await slow).status, 200);
  assert.equal((await ask(gateway.url, { key: second.secret, body: { max_tokens: 1 } })).status, 200);
});

test('a key at its cap under an org short of credits: the 429 names whichever denied, and its Retry-After', async () => {
  const chain = await newChain({ org: 10, orgPeriod: '1 day', cap: 1 });
  const inFlight = provider.stats.inFlight;
  const slow = ask(gateway.url, { key: chain.secret, body: { max_tokens: 2, fake: { delayMs: 800 } } });
  await until('the slow request to reach the provider', () => provider.stats.inFlight > inFlight);
  const denied = await ask(gateway.url, { key: chain.secret, body: { max_tokens: 9 } }); // the org has 8 left
  assert.equal(denied.status, 429);
  const retryAfter = Number(denied.retryAfter);
  // Both the key's cap and the org's credits refuse this one; the reply
  // carries the retry_after of one of them, and deniedBy must be that one.
  if (denied.body.deniedBy.reason === 'concurrency') {
    assert.deepEqual(denied.body.deniedBy, { account: chain.key, level: 'key', reason: 'concurrency', maxOpenHolds: 1 });
    assert.ok(retryAfter >= 28 && retryAfter <= 30, `Retry-After ${retryAfter}: until the open hold expires`);
  } else {
    assert.deepEqual(denied.body.deniedBy, { account: chain.org, level: 'org', reason: 'credits', remaining: 8 });
    assertRetryAfter(denied, await secondsToReset(chain.org), 2);
  }
  assert.equal((await slow).status, 200);
});
