'use strict';
// The "out of credits" notifier (src/notifier.js) against a real PostgreSQL
// with quota installed: it runs as the application role, LISTENs on
// quota_events and sends through a local fake mailer.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { once } = require('node:events');
const { Pool } = require('pg');
const { Credits } = require('../src/credits');
const { createFakeModel } = require('../src/model');
const { createChatServer } = require('../src/server');
const { OutOfCreditsNotifier, createFakeMailer } = require('../src/notifier');

const appRole = process.env.APP_ROLE ?? 'chat_app';
const admin = new Pool({ max: 2 });
const app = new Pool({ user: appRole, max: 60 });
const mailer = createFakeMailer();
let notifier;
let server;
let url;
let teams = 0;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const newNotifier = () => new OutOfCreditsNotifier({ clientConfig: { user: appRole }, pool: app, mailer });

test.before(async () => {
  await admin.query(fs.readFileSync(path.join(__dirname, '..', 'schema.sql'), 'utf8'));
  await admin.query(`GRANT SELECT, INSERT, DELETE ON chat_notified TO "${appRole}"`);
  notifier = newNotifier();
  await notifier.start();
  server = createChatServer({ credits: new Credits(app), model: createFakeModel({ slowMs: 5 }) });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${server.address().port}/chat`;
});

test.after(async () => {
  server.close();
  if (notifier) await notifier.stop();
  await Promise.all([admin.end(), app.end()]);
});

// A fresh team whose owner is told when it reaches 100 % of its budget.
async function newTeam(limit, period = '1 month') {
  teams += 1;
  const team = `notify-${process.pid}-${teams}`;
  await admin.query('SELECT quota.set_account($1, $2, period => $3::interval, anchor => now())', [team, limit, period]);
  await admin.query("SELECT quota.set_alerts($1, '{100}')", [team]);
  return team;
}

const messagesTo = (team) => mailer.sent.filter((m) => m.to === team);

// Wait until `team` has `count` messages (or a while), then a little more: no late duplicate may arrive.
async function settle(team, count) {
  for (let i = 0; i < 150 && messagesTo(team).length < count; i += 1) await sleep(20);
  await sleep(200);
  if (notifier) await notifier.idle();
  return messagesTo(team);
}

async function chat(team) {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify({ team, prompt: 'hello' }) });
  await res.text();
  return res.status;
}

test('a spend that rolls back raises nothing and sends nothing', async () => {
  const team = await newTeam(10);
  const client = await admin.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query('SELECT granted FROM quota.charge_credit($1, 10)', [team]);
    assert.equal(rows[0].granted, true);
    await client.query('ROLLBACK');
  } finally {
    client.release();
  }
  assert.deepEqual(await settle(team, 1), []);
  const { rows } = await admin.query('SELECT count(*)::int AS n FROM quota.events WHERE team = $1', [team]);
  assert.equal(rows[0].n, 0);
});

test('50 concurrent requests crossing 100 % send exactly one message', async () => {
  const team = await newTeam(10);
  const statuses = await Promise.all(Array.from({ length: 50 }, () => chat(team)));
  assert.equal(statuses.filter((s) => s === 200).length, 10);
  const sent = await settle(team, 1);
  assert.equal(sent.length, 1);
  const { rows } = await admin.query('SELECT resets_at FROM quota.usage WHERE team = $1', [team]);
  assert.equal(sent[0].text, `you are out of credits until ${rows[0].resets_at.toISOString()}`);
  const events = await admin.query('SELECT threshold FROM quota.events WHERE team = $1', [team]);
  assert.deepEqual(events.rows, [{ threshold: 100 }]);
});

test('a new window sends a new message', async () => {
  const team = await newTeam(3, '2 seconds');
  await app.query('SELECT quota.charge_credit($1, 3)', [team]);
  const first = await settle(team, 1);
  assert.equal(first.length, 1);
  // Into the next window: the budget is back, and running out again is news.
  const { rows } = await admin.query('SELECT resets_at FROM quota.usage WHERE team = $1', [team]);
  await sleep(Math.max(0, rows[0].resets_at.getTime() - Date.now()) + 50);
  const again = await app.query('SELECT granted FROM quota.charge_credit($1, 3)', [team]);
  assert.equal(again.rows[0].granted, true);
  const sent = await settle(team, 2);
  assert.equal(sent.length, 2);
  assert.notEqual(sent[0].resetsAt, sent[1].resetsAt);
});

test('a forged notification sends nothing: only rows of quota.events count', async () => {
  const team = await newTeam(10);
  const forged = JSON.stringify({ id: 987654321, team, resource: 'credits', threshold: 100, resets_at: null });
  await admin.query("SELECT pg_notify('quota_events', $1)", [forged]);
  assert.deepEqual(await settle(team, 1), []);
});

test('after a restart, events missed while down are replayed, once', async () => {
  await notifier.stop();
  notifier = null;
  const team = await newTeam(5);
  const statuses = await Promise.all(Array.from({ length: 8 }, () => chat(team)));
  assert.equal(statuses.filter((s) => s === 200).length, 5);
  await sleep(200);
  assert.equal(messagesTo(team).length, 0); // nobody was listening
  notifier = newNotifier();
  await notifier.start(); // replays what it missed
  assert.equal(messagesTo(team).length, 1);
  await notifier.stop();
  notifier = newNotifier();
  await notifier.start(); // a second restart sends nothing new
  assert.equal((await settle(team, 2)).length, 1);
});
