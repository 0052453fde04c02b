'use strict';
// "You are out of credits until <resets_at>": one message per team per
// budget window, driven by quota's alerts.
//
// quota raises an event when a spending call takes a team's used + held to
// a threshold (here 100 %: set with quota.set_alerts(team, '{100}') or the
// setting quota.default_alerts), once per (team, resource, window), in the
// spending transaction: a call that rolls back raises nothing.  The event
// is a row in quota.events and a NOTIFY on channel quota_events, delivered
// when that transaction commits.
//
// The notifier LISTENs on quota_events, and on start (after LISTEN, so
// nothing falls in between) replays the events it has not handled yet from
// quota.events: notifications sent while it was down are not lost.  Each
// (team, resource, window) is claimed in the app's table chat_notified
// (schema.sql) before its message is sent, so a replay, a second notifier
// or a duplicate notification never sends it twice.  A send that fails
// gives the claim back, so the next start tries again.
const { Client } = require('pg');

const CHANNEL = 'quota_events';
const UNHANDLED = `
  SELECT e.id, e.team, e.resource, e.window_start, e.resets_at, e.threshold, e.used, e.held, e.credit_limit
    FROM quota.events e
   WHERE e.threshold >= $1
     AND NOT EXISTS (SELECT FROM chat_notified n
                      WHERE n.team = e.team AND n.resource = e.resource AND n.window_start = e.window_start)
   ORDER BY e.id`;
// A NOTIFY needs no privilege: anyone who can connect could send one on this
// channel.  The payload only says which event to look at; the event itself
// is read from quota.events, which only quota writes.
const EVENT_BY_ID = `
  SELECT e.id, e.team, e.resource, e.window_start, e.resets_at, e.threshold, e.used, e.held, e.credit_limit
    FROM quota.events e WHERE e.id = $1`;
const CLAIM = `
  INSERT INTO chat_notified (team, resource, window_start, event_id) VALUES ($1, $2, $3, $4)
  ON CONFLICT DO NOTHING RETURNING event_id`;
const UNCLAIM = 'DELETE FROM chat_notified WHERE team = $1 AND resource = $2 AND window_start = $3';

function messageFor(event) {
  const until = event.resets_at ? new Date(event.resets_at).toISOString() : null;
  return {
    to: event.team,
    subject: 'You are out of AI credits',
    text: until
      ? `you are out of credits until ${until}`
      : 'you are out of credits (this budget does not reset)',
    resetsAt: until,
  };
}

class OutOfCreditsNotifier {
  // clientConfig: pg.Client options (a connection of its own, for LISTEN);
  // pool: for the claims; mailer: { send(message) } (async).
  constructor({ clientConfig = {}, pool, mailer, threshold = 100, log = () => {} }) {
    this.clientConfig = clientConfig;
    this.pool = pool;
    this.mailer = mailer;
    this.threshold = threshold;
    this.log = log;
    this.client = null;
    this.queue = Promise.resolve(); // events handled one at a time, in order
  }

  async start() {
    this.client = new Client(this.clientConfig);
    this.client.on('notification', (msg) => {
      if (msg.channel !== CHANNEL) return;
      let event;
      try {
        event = JSON.parse(msg.payload);
      } catch (err) {
        this.log(`ignoring a malformed ${CHANNEL} payload: ${err.message}`);
        return;
      }
      if (Number.isSafeInteger(Number(event.id))) this.enqueue({ id: event.id });
    });
    this.client.on('error', (err) => this.log(`notifier connection: ${err.message}`));
    await this.client.connect();
    await this.client.query(`LISTEN ${CHANNEL}`);
    // Missed while down (or before this notifier existed): replayed from the table.
    const { rows } = await this.pool.query(UNHANDLED, [this.threshold]);
    for (const event of rows) this.enqueue({ id: event.id });
    await this.idle();
  }

  enqueue(event) {
    this.queue = this.queue.then(() => this.handle(event)).catch((err) => this.log(`notifier: ${err.message}`));
  }

  // Resolves once every event received so far has been handled.
  idle() {
    return this.queue;
  }

  async handle(hint) {
    const found = await this.pool.query(EVENT_BY_ID, [hint.id]);
    if (found.rows.length === 0) {
      this.log(`ignoring a ${CHANNEL} notification for event ${hint.id}, which quota.events does not have`);
      return;
    }
    const event = found.rows[0];
    if (event.threshold < this.threshold) return;
    const key = [event.team, event.resource, event.window_start];
    const { rows } = await this.pool.query(CLAIM, [...key, event.id]);
    if (rows.length === 0) return; // this window's message was sent already
    try {
      await this.mailer.send(messageFor(event));
      this.log(`sent "out of credits" to ${event.team} (event ${event.id})`);
    } catch (err) {
      await this.pool.query(UNCLAIM, key);
      throw err;
    }
  }

  async stop() {
    await this.idle();
    if (this.client) await this.client.end();
    this.client = null;
  }
}

// A local fake mailer: keeps what it "sent".
function createFakeMailer() {
  const sent = [];
  return {
    sent,
    async send(message) {
      sent.push(message);
    },
  };
}

module.exports = { OutOfCreditsNotifier, createFakeMailer, messageFor };
