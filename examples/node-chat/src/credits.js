'use strict';
// The three quota calls the chat backend makes, each one statement in its
// own transaction (autocommit), so no row lock outlives the call.

const RESERVE = `
  SELECT granted, reservation, used, held, credit_limit, remaining, resets_at, retry_after
    FROM quota.reserve_credit($1, 1, 'credits', $2::interval)`;
const COMMIT = 'SELECT granted, used, held, credit_limit, remaining, resets_at FROM quota.commit_credit($1)';
const RELEASE = 'SELECT quota.release_credit($1) AS released';

// bigint columns arrive as strings; credits and limits fit a JS number.
function toNumber(value) {
  return value === null ? null : Number(value);
}

function grantOf(row) {
  return {
    granted: row.granted,
    reservation: row.reservation, // kept as a string: it is only passed back
    used: toNumber(row.used),
    held: toNumber(row.held),
    creditLimit: toNumber(row.credit_limit),
    remaining: toNumber(row.remaining),
    resetsAt: row.resets_at,
    retryAfter: row.retry_after,
  };
}

class Credits {
  constructor(pool, { holdFor = '2 minutes' } = {}) {
    this.pool = pool;
    this.holdFor = holdFor;
  }

  async reserve(team) {
    const { rows } = await this.pool.query(RESERVE, [team, this.holdFor]);
    return grantOf(rows[0]);
  }

  async commit(reservation) {
    const { rows } = await this.pool.query(COMMIT, [reservation]);
    return grantOf(rows[0]);
  }

  async release(reservation) {
    const { rows } = await this.pool.query(RELEASE, [reservation]);
    return rows[0].released;
  }
}

module.exports = { Credits };
