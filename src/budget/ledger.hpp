/*
 * ledger.hpp — the operations of the contract, one per SQL function.
 *
 * Each runs inside the caller's transaction: it locks the one account row
 * it touches (SELECT ... FOR UPDATE), applies the lazy rollover and hold
 * expiry, decides with the rules of account.hpp, and writes back.  A
 * denial is a result, not an error.
 */
#pragma once

#include "budget/account.hpp"
#include "storage/store.hpp"

namespace quota::ledger {

using storage::AccountKey;

void set_account(AccountKey key, int64 credit_limit, const Period *period, TimestampTz anchor, bool unlimited);

Grant reserve(AccountKey key, int64 amount, const Period *hold_for, const Datum *idempotency_key);
Grant commit(int64 reservation, const int64 *amount);
bool release(int64 reservation);
Grant charge(AccountKey key, int64 amount, bool allow_overdraft);

/* Read-only: no row lock, never waits. */
bool is_limited(AccountKey key);

/* Release every expired hold, skipping accounts other transactions hold locked. */
int64 expire_holds();

/* An account row as readers see it now: rolled over, expired holds released. */
Usage current_usage(Account account, int64 expired_held, TimestampTz now);

} // namespace quota::ledger
