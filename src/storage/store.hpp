/*
 * store.hpp — storage access: the tables quota.accounts and quota.holds.
 *
 * Every statement is prepared once per backend (SPI_prepare +
 * SPI_keepplan), schema-qualified down to its operators, and run through
 * bridge::guarded(), so a PostgreSQL error arrives here as quota::PgError.
 * The lock-free account read is a direct index lookup instead.
 * Row locks are taken in SQL (FOR UPDATE), where PostgreSQL re-checks a
 * row that a concurrent transaction updated before we got the lock.
 *
 * Lock order, which keeps the extension's calls free of deadlocks: a call
 * locks one account row, and only then the hold rows of that account.
 * No call locks a hold row before its account.
 */
#pragma once

#include "budget/account.hpp"

#include <vector>

namespace quota::storage {

/* An account's key as text Datums (team, resource). */
struct AccountKey {
    Datum team;
    Datum resource;
};

enum class HoldState { Open, Committed, Released, Expired };

struct Hold {
    int64 id = 0;
    AccountKey key{};
    HoldState state = HoldState::Open;
    int64 amount = 0;
};

struct ExpiredHolds {
    int64 amount = 0;
    int64 count = 0;
    bool has_next_expiry = false;
    TimestampTz next_expiry = 0;
};

/* The SPI connection a call works in; finish() it before building the result. */
void connect();
void finish();

/* SELECT ... FOR UPDATE of one account; false when it does not exist. */
bool lock_account(AccountKey key, Account &account, ItemPointerData &row);

/*
 * A read with no lock, under the active snapshot: a direct primary-key
 * lookup (no SQL, no executor), for the reads that must cost next to
 * nothing.  False when the account does not exist.
 */
bool fetch_account(AccountKey key, Account &account);

/* The credits of the account's open holds past their expiry at `at` (snapshot read). */
int64 expired_held(AccountKey key, TimestampTz at);

/* INSERT ... ON CONFLICT DO NOTHING; false when the account already existed. */
bool insert_account(AccountKey key, const Account &account);

/* Write back a locked account row. */
void update_account(const ItemPointerData &row, const Account &account);

/* Mark the account's open holds past `now` expired; the caller holds the account lock. */
ExpiredHolds expire_holds(AccountKey key, TimestampTz now);

bool read_hold(int64 id, Hold &hold);
bool find_hold(AccountKey key, Datum idempotency_key, Hold &hold);
int64 insert_hold(AccountKey key, int64 amount, TimestampTz now, const TimestampTz *expires_at,
                  const Datum *idempotency_key);
void settle_hold(int64 id, HoldState state, TimestampTz now, const int64 *committed);

/* Lock, skipping rows other transactions hold, every account with holds that may have expired. */
std::vector<AccountKey> lock_accounts_with_expired_holds(TimestampTz now);

/* Decode a quota.accounts row value (the view's per-row state). */
Account account_from_row(HeapTupleHeader row);

/* The role that owns the extension's tables (cached per backend). */
Oid tables_owner();

/* An account key's names, for messages. */
const char *team_name(AccountKey key);
const char *resource_name(AccountKey key);

} // namespace quota::storage
