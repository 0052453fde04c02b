'use strict';
// An LLM gateway's admission check.  Per request it asks quota whether the
// team is limited: one lock-free read (quota.is_team_limited never waits for
// a writer, so a team that is spending heavily does not slow its own gateway).
//
//   limited      -> 429, Retry-After = seconds until quota.usage.resets_at
//                   (no Retry-After when the budget never resets)
//   unknown team -> 403
//   otherwise    -> the request goes upstream (the spend itself is metered
//                   where the work happens, e.g. with reserve/commit)
const http = require('node:http');

const IS_LIMITED = 'SELECT quota.is_team_limited($1, $2) AS limited';
const RETRY_AFTER = `
  SELECT resets_at,
         greatest(1, ceil(extract(epoch FROM resets_at - clock_timestamp())))::int AS retry_after
    FROM quota.usage
   WHERE team = $1 AND resource = $2`;

function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function createGateway({ pool, upstream, resource = 'credits', log = () => {} }) {
  async function handle(req, res) {
    const team = req.headers['x-team'];
    if (typeof team !== 'string' || team === '') {
      return sendJson(res, 401, { error: 'missing X-Team header' });
    }
    let limited;
    try {
      ({ rows: [{ limited }] } = await pool.query(IS_LIMITED, [team, resource]));
    } catch (err) {
      if (err.code === 'P0002') return sendJson(res, 403, { error: `unknown team "${team}"` });
      throw err;
    }
    if (limited) {
      const { rows: [window] } = await pool.query(RETRY_AFTER, [team, resource]);
      if (window?.resets_at) {
        return sendJson(res, 429, { error: 'credit limit reached', resetsAt: window.resets_at },
          { 'retry-after': String(window.retry_after) });
      }
      return sendJson(res, 429, { error: 'credit limit reached; this budget does not reset' });
    }
    return upstream(req, res);
  }

  return http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      log(`internal error: ${err.stack}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.end();
    });
  });
}

// A stand-in for the model provider.
function fakeUpstream(req, res) {
  sendJson(res, 200, { model: 'fake-llm', answer: `upstream served ${req.method} ${req.url}` });
}

module.exports = { createGateway, fakeUpstream };
