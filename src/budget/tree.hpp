/*
 * tree.hpp — parent budgets (org > team > user) and concurrency caps
 * (README, "Parent budgets and concurrency caps").
 *
 * The SQL entry points call these instead of the ledger's spending and
 * settling calls.  An account without links (no parent, no cap) goes
 * straight to the ledger; the per-backend cache of quota.links answers
 * that without SQL (and without a lookup at all while no account has
 * links).
 *
 * A spending call on an account with a parent runs the ledger's call on
 * every account of its chain, root first (one canonical order: an ancestor
 * before any of its descendants, so calls on siblings meet first at their
 * common ancestors, and a transaction that keeps one call order locks the
 * ancestors of each account before the account), inside a subtransaction
 * of its own (bridge/subtransaction.hpp): when an account denies, the
 * subtransaction rolls back, so the call changes nothing.  Settling a hold
 * made through parents settles the ancestors' parts first, in the same
 * order.  Each account's step is the ledger's, so a busy parent gets slots
 * automatically like any hot account, and its children spend side by side
 * on its slots.
 *
 * Each account's parent and cap are read before its step and checked
 * again with its lock held: when a set_parent() or set_concurrency() that
 * committed in between changed them, a chain call starts again with the
 * chain as it is now; a call on an account that had no parent when it was
 * read fails with 40001 (retry).  No call spends along a chain other than
 * the one its locks saw.
 */
#pragma once

#include "budget/account.hpp"
#include "storage/store.hpp"

namespace quota::tree {

using storage::AccountKey;

/* The longest chain, in accounts (the account and up to three ancestors). */
inline constexpr int32 kMaxChain = 4;

Grant reserve(AccountKey key, int64 amount, const TimestampTz *expires_at, const Datum *idempotency_key);
Grant charge(AccountKey key, int64 amount, bool allow_overdraft);
Grant commit(int64 reservation, const int64 *amount);
bool release(int64 reservation);
bool is_limited(AccountKey key);

/* parent nullptr detaches; P0002 for a missing account or parent, 22023 for a cycle or a chain over kMaxChain. */
void set_parent(AccountKey key, const Datum *parent);

/* cap nullptr removes it; 22023 when negative. */
void set_concurrency(AccountKey key, const int32 *cap);

/* Whether the account has a concurrency cap (the links cache): the ledger gives such accounts no slots. */
bool capped(AccountKey key);

/* A relcache invalidation (callback registered by _PG_init): forget the cache if it is quota.links'. */
void relcache_changed(Oid relation);

} // namespace quota::tree
