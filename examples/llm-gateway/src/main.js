'use strict';
// Run the gateway.  Settings, from the environment:
//   PG* or DATABASE_URL   the database (as a role with only USAGE on schema quota)
//   PORT                  port to listen on (default 8080)
//   QUOTA_RESOURCE        the budget (default credits)
//   UPSTREAM_URL          the provider's chat completions URL (default: an in-process fake)
//   REQUEST_TIMEOUT_MS    how long the provider may take (default 60000)
//   HOLD_FOR_MS           hold_for of each reservation (default REQUEST_TIMEOUT_MS)
//   DEFAULT_MAX_TOKENS    the estimate when a request names no max_tokens (default 1024)
//   FAIL_OPEN_MS          database unreachable: admit for this long, then 503 (default 30000)
//   DB_BACKOFF_BASE_MS, DB_BACKOFF_MAX_MS   reconnect backoff (default 250, capped at 10000)
//   DB_TIMEOUT_MS         connect and query timeout, so a dead network counts as down (default 2000)
// Log lines are JSON, one per line, on stderr.
const { Pool } = require('pg');
const { createGateway, fakeUpstream, fakeProvider, httpProvider } = require('./gateway');

const env = process.env;
const ms = (name, fallback) => {
  const value = env[name] === undefined || env[name] === '' ? fallback : Number(env[name]);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number of milliseconds`);
  return value;
};

const dbTimeoutMs = ms('DB_TIMEOUT_MS', 2000);
const pool = new Pool({
  ...(env.DATABASE_URL ? { connectionString: env.DATABASE_URL } : {}),
  connectionTimeoutMillis: dbTimeoutMs,
  query_timeout: dbTimeoutMs,
});
const timeoutMs = ms('REQUEST_TIMEOUT_MS', 60000);
const gateway = createGateway({
  pool,
  upstream: fakeUpstream,
  provider: env.UPSTREAM_URL ? httpProvider(env.UPSTREAM_URL) : fakeProvider,
  resource: env.QUOTA_RESOURCE || 'credits',
  timeoutMs,
  holdForMs: ms('HOLD_FOR_MS', timeoutMs),
  defaultMaxTokens: ms('DEFAULT_MAX_TOKENS', 1024),
  failOpenMs: ms('FAIL_OPEN_MS', 30000),
  backoffBaseMs: ms('DB_BACKOFF_BASE_MS', 250),
  backoffMaxMs: ms('DB_BACKOFF_MAX_MS', 10000),
  log: (record) => process.stderr.write(`${JSON.stringify(record)}\n`),
});
const port = Number(env.PORT ?? 8080);
gateway.listen(port, () => process.stderr.write(`${JSON.stringify({ event: 'listening', url: `http://localhost:${port}/` })}\n`));
