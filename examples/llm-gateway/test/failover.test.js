'use strict';
// The database goes away in the middle of the test: the gateway fails open
// for failOpenMs (unmetered, every decision logged), then closed (503), and
// recovers on its own once the database is back.  The test stops and starts
// a cluster of its own (test-lib/cluster.js), never the shared one.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Pool } = require('pg');
const { keyAccount } = require('../src/gateway');
const { Cluster } = require('../test-lib/cluster');
const { sleep, startFakeProvider, startGateway, ask, until } = require('../test-lib/fakes');

const FAIL_OPEN_MS = 1500;
const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 400;
const SECRET = 'sk-failover-test';
const KEY = keyAccount(SECRET);

let cluster;
let admin;
let app;
let provider;
let gateway;

test.before(async () => {
  cluster = await Cluster.create();
  admin = new Pool({ ...cluster.connection, user: 'postgres', max: 2 });
  admin.on('error', () => {}); // its idle connections die with the server
  await admin.query(`
    CREATE EXTENSION quota;
    CREATE ROLE failover_app LOGIN;
    GRANT USAGE ON SCHEMA quota TO failover_app;
    SELECT quota.set_account('fo-org', 100000, period => '1 month');
    SELECT quota.set_account('fo-team', 10000, period => '1 day');
    SELECT quota.set_account('fo-team-x', 10000);
    SELECT quota.set_account('${KEY}', 1000);
    SELECT quota.set_parent('fo-team', 'fo-org');
    SELECT quota.set_parent('${KEY}', 'fo-team');
    SELECT quota.set_concurrency('${KEY}', 5);`);
  app = new Pool({ ...cluster.connection, user: 'failover_app', max: 5, connectionTimeoutMillis: 1000 });
  provider = await startFakeProvider();
  gateway = await startGateway({
    pool: app,
    providerUrl: provider.url,
    timeoutMs: 5000,
    failOpenMs: FAIL_OPEN_MS,
    backoffBaseMs: BACKOFF_BASE_MS,
    backoffMaxMs: BACKOFF_MAX_MS,
  });
});

test.after(async () => {
  try {
    gateway?.close();
    provider?.close();
    await Promise.allSettled([admin?.end(), app?.end()]);
  } finally {
    cluster?.destroy();
  }
});

const events = (name) => gateway.logs.filter((line) => line.event === name);
const decisions = () => gateway.logs.filter((line) => line.event === 'quota_fail_open' || line.event === 'quota_fail_closed');

async function keyUsage() {
  const { rows } = await admin.query(
    "SELECT used::int, held::int FROM quota.usage WHERE team = $1 AND resource = 'credits'", [KEY]);
  return [rows[0].used, rows[0].held];
}

test('database down: fail open for FAIL_OPEN_MS (unmetered, logged), then closed with 503, then recover', async () => {
  // Up: metered as usual.
  assert.equal((await ask(gateway.url, { key: SECRET, body: { max_tokens: 10, fake: { tokens: 7 } } })).status, 200);
  assert.deepEqual(await keyUsage(), [7, 0]);
  assert.equal((await ask(gateway.url, { team: 'fo-team-x' })).status, 200);
  assert.equal(decisions().length, 0, 'no degraded-mode lines while the database answers');

  cluster.stop('immediate');

  // Fail open: the first failure starts the window; requests are admitted,
  // unmetered, and each decision is one log line saying why.
  const open = await ask(gateway.url, { key: SECRET, body: { max_tokens: 10, fake: { tokens: 3 } } });
  assert.equal(open.status, 200);
  assert.equal(open.remaining, null, 'not metered');
  const [down] = events('quota_db_down');
  assert.ok(down, 'the outage is logged');
  assert.equal(events('quota_db_down').length, 1);
  const [first] = decisions();
  assert.deepEqual(
    { event: first.event, decision: first.decision, path: first.path, account: first.account, metered: first.metered },
    { event: 'quota_fail_open', decision: 'admit', path: 'key', account: KEY, metered: false },
  );
  assert.match(first.reason, /^database unreachable: /);
  assert.ok(first.downForMs < FAIL_OPEN_MS && first.failOpenMs === FAIL_OPEN_MS);
  assert.ok(!JSON.stringify(gateway.logs).includes(SECRET), 'keys are never logged');
  const downAt = Date.parse(down.time);

  await sleep(300);
  const openTeam = await ask(gateway.url, { team: 'fo-team-x' });
  assert.equal(openTeam.status, 200, 'the X-Team path fails open too');
  assert.deepEqual([decisions().length, decisions().at(-1).path, decisions().at(-1).decision], [2, 'team', 'admit']);

  // Fail closed once the window is over, until the database is back.
  await sleep(Math.max(0, downAt + FAIL_OPEN_MS - Date.now()) + 100);
  for (const request of [{ key: SECRET, body: { max_tokens: 10 } }, { team: 'fo-team-x' }]) {
    const closed = await ask(gateway.url, request);
    assert.equal(closed.status, 503);
    assert.equal(closed.retryAfter, '1', 'back after the next reconnect attempt (at most 400 ms away)');
    const line = decisions().at(-1);
    assert.deepEqual([line.event, line.decision], ['quota_fail_closed', 'refuse']);
    assert.ok(line.downForMs >= FAIL_OPEN_MS);
  }
  assert.equal(decisions().length, 4, 'one line per decision');
  assert.equal(provider.stats.calls, 2, 'refused requests never reach the provider');

  // Reconnecting with exponential backoff, capped.
  const waits = events('quota_db_reconnect_failed').map((line) => line.nextAttemptInMs);
  assert.ok(waits.length >= 3, `reconnect attempts: ${waits}`);
  assert.deepEqual(waits.slice(0, 3), [200, 400, 400]);
  assert.ok(waits.every((ms) => ms <= BACKOFF_MAX_MS));

  // Back: the next probe finds it, and requests are metered again.
  cluster.start();
  const back = await until('the gateway to reconnect', () => events('quota_db_reconnected')[0], 5000);
  assert.ok(back.downForMs >= FAIL_OPEN_MS);
  const metered = await ask(gateway.url, { key: SECRET, body: { max_tokens: 10, fake: { tokens: 5 } } });
  assert.equal(metered.status, 200);
  assert.deepEqual(await keyUsage(), [12, 0], 'metered before and after; what was admitted while open was not');
  assert.equal(decisions().length, 4, 'no degraded-mode lines once it is back');
});
