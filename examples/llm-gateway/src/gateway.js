'use strict';
// An LLM gateway in front of a model provider, with two ways in.
//
// 1. X-Team: an admission check only.  One lock-free read
//    (quota.is_team_limited never waits for a writer, so a team that is
//    spending heavily does not slow its own gateway):
//      limited      -> 429, Retry-After = seconds until quota.usage.resets_at
//                      (no Retry-After when the budget never resets)
//      unknown team -> 403
//      otherwise    -> the request goes upstream (the spend itself is
//                      metered where the work happens)
//
// 2. An API key (Authorization: Bearer <key>, or X-Api-Key): metered.  The
//    key is a quota account whose parents are its team and the team's org
//    (key > team > org, quota.set_parent), usually with a cap on the
//    requests it may have in flight (quota.set_concurrency).  Per request:
//      quota.reserve_credit(key, estimate, hold_for => holdFor)  -- one statement
//      denied       -> 429, Retry-After = the reply's retry_after
//                      (no Retry-After when it is NULL)
//      granted      -> the provider is called, with a timeout, then
//        success    -> quota.commit_credit(reservation, tokens used)
//        failure    -> quota.release_credit(reservation)
//        timeout    -> 504, and the hold is left alone: the provider may
//                      still be working (and billing) on it, so the key's
//                      place stays taken until the hold expires, then frees
//                      itself, as it does when a gateway crashes mid-request.
//
// Either way, while the database cannot be reached the gateway fails open
// for failOpenMs, then closed (503), until it reconnects (see guard.js).
const crypto = require('node:crypto');
const http = require('node:http');
const { DbGuard, isUnreachable, describe } = require('./guard');

const IS_LIMITED = 'SELECT quota.is_team_limited($1, $2) AS limited';
const RETRY_AFTER = `
  SELECT resets_at,
         greatest(1, ceil(extract(epoch FROM resets_at - clock_timestamp())))::int AS retry_after
    FROM quota.usage
   WHERE team = $1 AND resource = $2`;
// One round trip, autocommit: the hold is on the key and every ancestor, or on none.
const RESERVE = `
  SELECT granted, reservation, remaining, resets_at, retry_after
    FROM quota.reserve_credit($1, $2, $3, hold_for => $4::interval)`;
const COMMIT = 'SELECT granted, remaining FROM quota.commit_credit($1, $2)';
const RELEASE = 'SELECT quota.release_credit($1) AS released';
// Only after a denial, to say who denied: the reply does not name the
// account.  The chain from the key up with what quota.usage and quota.links
// show of each (both readable by the application role), and the Retry-After
// a credit denial with the reply's resets_at would have had.
const CHAIN = `
  WITH RECURSIVE chain(team, depth) AS (
      SELECT $1::text, 0
    UNION ALL
      SELECT l.parent, c.depth + 1
        FROM chain c JOIN quota.links l ON l.team = c.team AND l.resource = $2
       WHERE l.parent IS NOT NULL AND c.depth < 3)
  SELECT c.team, c.depth, u.remaining, u.resets_at, u.limited,
         (SELECT l.max_open_holds FROM quota.links l WHERE l.team = c.team AND l.resource = $2) AS max_open_holds,
         CASE WHEN $3::timestamptz IS NOT NULL
              THEN greatest(1, ceil(extract(epoch FROM $3::timestamptz - clock_timestamp())))::int END AS reset_retry_after
    FROM chain c
    CROSS JOIN LATERAL (SELECT remaining, resets_at, limited FROM quota.usage
                         WHERE team = c.team AND resource = $2) u
   ORDER BY c.depth`;

const MAX_BODY = 1 << 20;

// The quota account of an API key.  Keys are secrets: the database and the
// logs only ever see this digest.
function keyAccount(key) {
  return `key-${crypto.createHash('sha256').update(key).digest('hex').slice(0, 32)}`;
}

function apiKey(req) {
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (bearer) return bearer[1];
  }
  const key = req.headers['x-api-key'];
  return typeof key === 'string' && key !== '' ? key : null;
}

function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    const body = JSON.parse(text);
    if (body && typeof body === 'object' && !Array.isArray(body)) return body;
  } catch { /* answered below */ }
  throw Object.assign(new Error('the request body must be a JSON object'), { status: 400 });
}

// Tokens the provider says it used, or null (then the estimate is committed).
function tokensUsed(body) {
  const n = body?.usage?.total_tokens;
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

// A provider reached over HTTP (an OpenAI-style chat completions endpoint).
function httpProvider(url) {
  return async ({ body, signal }) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal,
    });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = { error: 'the provider did not answer JSON' };
    }
    return { status: res.status, body: json };
  };
}

// Stand-ins for the model provider.
function fakeUpstream(req, res) {
  sendJson(res, 200, { model: 'fake-llm', answer: `upstream served ${req.method} ${req.url}` });
}

async function fakeProvider({ body }) {
  const max = Number.isSafeInteger(body.max_tokens) ? body.max_tokens : 16;
  return {
    status: 200,
    body: {
      model: 'fake-llm',
      choices: [{ message: { role: 'assistant', content: 'fake answer' } }],
      usage: { total_tokens: Math.min(max, 12) },
    },
  };
}

function createGateway({
  pool,
  upstream = fakeUpstream, // X-Team requests go here once admitted
  provider = fakeProvider, // metered (API key) requests go here
  resource = 'credits',
  timeoutMs = 60000, // how long the provider may take
  holdForMs = timeoutMs, // hold_for of each reservation: how long a request that never settles keeps its place
  defaultMaxTokens = 1024, // the estimate when the request names no max_tokens
  failOpenMs = 30000,
  backoffBaseMs = 250,
  backoffMaxMs = 10000,
  levels = ['key', 'team', 'org'], // names of the chain's levels, from the key up
  log = () => {},
  now = Date.now,
}) {
  const logLine = (record) => log({ time: new Date(now()).toISOString(), ...record });
  const guard = new DbGuard({
    probe: () => pool.query('SELECT 1'),
    failOpenMs,
    backoffBaseMs,
    backoffMaxMs,
    log: logLine,
    now,
  });
  // An idle pooled connection that breaks (say, the server stopped) must not
  // crash the process; the next query will find out and fail over.
  const onPoolError = (err) => logLine({ level: 'warn', event: 'quota_db_idle_connection_lost', reason: describe(err) });
  pool.on('error', onPoolError);

  // Run a query; null when the database cannot be reached (the guard is told).
  async function query(sql, params, context) {
    try {
      return await pool.query(sql, params);
    } catch (err) {
      if (!isUnreachable(err)) throw err;
      guard.failed(err, context);
      return null;
    }
  }

  // While the database is down: admit (unmetered) or refuse, and log it.
  function degraded(res, fields, admitted) {
    const { admit, retryAfter } = guard.decide(fields);
    if (admit) return admitted();
    return sendJson(res, 503, { error: 'quota service unavailable; try again later' },
      { 'retry-after': String(retryAfter) });
  }

  async function teamRequest(req, res, team) {
    const fields = { path: 'team', account: team, method: req.method, url: req.url };
    if (guard.down) return degraded(res, fields, () => upstream(req, res));
    let result;
    try {
      result = await query(IS_LIMITED, [team, resource], fields);
    } catch (err) {
      if (err.code === 'P0002') return sendJson(res, 403, { error: `unknown team "${team}"` });
      throw err;
    }
    if (!result) return degraded(res, fields, () => upstream(req, res));
    if (result.rows[0].limited) {
      const window = (await query(RETRY_AFTER, [team, resource], fields))?.rows[0];
      if (window?.resets_at) {
        return sendJson(res, 429, { error: 'credit limit reached', resetsAt: window.resets_at },
          { 'retry-after': String(window.retry_after) });
      }
      return sendJson(res, 429, { error: 'credit limit reached; this budget does not reset' });
    }
    return upstream(req, res);
  }

  // Which account of the chain denied, as far as one read right after the
  // denial can tell (best effort: others spend meanwhile).  The reply's
  // remaining is the least over the chain: if it covers the estimate, a
  // concurrency cap denied.  Otherwise an account short of credits denied if
  // the reply's retry_after is what its resets_at gives (NULL for a budget
  // that never resets); if not, the retry_after is a hold's expiry: a cap.
  async function whoDenied(account, estimate, grant) {
    const { rows } = await pool.query(CHAIN, [account, resource, grant.resets_at]);
    const name = (row) => ({ account: row.team, level: levels[row.depth] ?? `level ${row.depth}` });
    const byCap = () => {
      const capped = rows.find((row) => row.max_open_holds !== null); // the nearest, if several
      return capped ? { ...name(capped), reason: 'concurrency', maxOpenHolds: capped.max_open_holds } : null;
    };
    const byCredits = (row) => ({ ...name(row), reason: 'credits', remaining: Number(row.remaining) });
    if (grant.remaining === null || Number(grant.remaining) >= estimate) return byCap();
    const lacking = rows.filter((row) => row.remaining !== null && Number(row.remaining) < estimate);
    const sameReset = (row) => (row.resets_at?.getTime() ?? null) === (grant.resets_at?.getTime() ?? null);
    const resetRetry = rows[0]?.reset_retry_after ?? null;
    const creditLike = grant.retry_after === null
      ? resetRetry === null
      : resetRetry !== null && Math.abs(grant.retry_after - resetRetry) <= 1;
    const denier = lacking.find(sameReset);
    if (denier && creditLike) return byCredits(denier);
    return byCap() ?? (lacking[0] ? byCredits(lacking[0]) : null);
  }

  // Call the provider with the gateway's timeout.
  async function callProvider(body) {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    try {
      return { answer: await provider({ body, signal: controller.signal }) };
    } catch (err) {
      return { error: err, timedOut };
    } finally {
      clearTimeout(timer);
    }
  }

  function relay(res, outcome, headers = {}) {
    if (outcome.timedOut) return sendJson(res, 504, { error: 'the model provider timed out' });
    if (outcome.error) return sendJson(res, 502, { error: 'the model provider could not be reached' });
    // The provider's own refusals (4xx) are the client's business; its failures are a bad gateway.
    const status = outcome.answer.status >= 500 ? 502 : outcome.answer.status;
    return sendJson(res, status, outcome.answer.body, headers);
  }

  // Commit or release; a failure here is logged, never shown to the client
  // (the hold expires by itself).
  async function settle(sql, params, fields) {
    try {
      const result = await query(sql, params, fields);
      if (result) return result.rows[0];
      logLine({ level: 'error', event: 'quota_settle_failed', ...fields, reason: guard.reason, note: 'the hold expires by itself' });
    } catch (err) {
      logLine({ level: 'error', event: 'quota_settle_failed', ...fields, reason: describe(err) });
    }
    return null;
  }

  async function keyRequest(req, res, key) {
    const account = keyAccount(key);
    const body = await readJson(req);
    let estimate = defaultMaxTokens;
    if (body.max_tokens !== undefined) {
      if (!Number.isSafeInteger(body.max_tokens) || body.max_tokens < 1) {
        return sendJson(res, 400, { error: 'max_tokens must be a positive integer' });
      }
      estimate = body.max_tokens;
    }
    const fields = { path: 'key', account, method: req.method, url: req.url };
    const unmetered = async () => relay(res, await callProvider(body));
    if (guard.down) return degraded(res, fields, unmetered);

    let result;
    try {
      result = await query(RESERVE, [account, estimate, resource, `${holdForMs} milliseconds`], fields);
    } catch (err) {
      if (err.code === 'P0002') return sendJson(res, 403, { error: 'unknown API key' });
      throw err;
    }
    if (!result) return degraded(res, fields, unmetered);
    const grant = result.rows[0];

    if (!grant.granted) {
      let deniedBy = null;
      try {
        deniedBy = await whoDenied(account, estimate, grant);
      } catch (err) {
        logLine({ level: 'warn', event: 'quota_denier_unknown', account, reason: describe(err) });
      }
      const concurrency = deniedBy?.reason === 'concurrency';
      const headers = grant.retry_after === null ? {} : { 'retry-after': String(grant.retry_after) };
      return sendJson(res, 429, {
        error: concurrency ? 'too many requests in flight' : 'credit limit reached',
        deniedBy,
        retryAfter: grant.retry_after,
        resetsAt: grant.resets_at,
      }, headers);
    }

    const reservation = grant.reservation;
    const outcome = await callProvider(body);
    if (outcome.timedOut) {
      logLine({ level: 'warn', event: 'upstream_timeout', account, reservation, timeoutMs, holdForMs, note: 'not settled: the hold expires by itself' });
      return relay(res, outcome);
    }
    const ok = !outcome.error && outcome.answer.status >= 200 && outcome.answer.status < 300;
    if (!ok) {
      await settle(RELEASE, [reservation], { action: 'release', account, reservation });
      return relay(res, outcome);
    }
    const used = tokensUsed(outcome.answer.body);
    const committed = await settle(COMMIT, [reservation, used], { action: 'commit', account, reservation, amount: used });
    return relay(res, outcome, committed?.remaining == null ? {} : { 'x-quota-remaining': String(committed.remaining) });
  }

  async function handle(req, res) {
    const key = apiKey(req);
    if (key !== null) return keyRequest(req, res, key);
    const team = req.headers['x-team'];
    if (typeof team === 'string' && team !== '') return teamRequest(req, res, team);
    return sendJson(res, 401, { error: 'missing API key (Authorization: Bearer ...) or X-Team header' });
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (err.status && !res.headersSent) return sendJson(res, err.status, { error: err.message });
      logLine({ level: 'error', event: 'internal_error', error: err.stack });
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.end();
    });
  });
  server.on('close', () => {
    guard.close();
    pool.off('error', onPoolError);
  });
  server.guard = guard;
  return server;
}

module.exports = { createGateway, fakeUpstream, fakeProvider, httpProvider, keyAccount, apiKey };
