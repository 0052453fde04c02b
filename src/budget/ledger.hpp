/*
 * ledger.hpp — the operations of the contract, one per SQL function.
 *
 * Each runs inside the caller's transaction: it locks the one account row
 * it touches (SELECT ... FOR UPDATE), applies the lazy rollover and hold
 * expiry, decides with the rules of account.hpp, and writes back.  A
 * denial is a result, not an error.
 *
 * A slotted account is first tried on the fast path (escrow.hpp: one slot
 * locked); when that cannot serve, the call locks the account row and then
 * every slot in slot order, decides on the whole account, and deals out
 * what is left as the slots' shares again.
 */
#pragma once

#include <functional>
#include <vector>

#include "budget/account.hpp"
#include "storage/store.hpp"

namespace quota::ledger {

using storage::AccountKey;

/* anchor nullptr: a new account anchors at now(), an existing one keeps its anchor. */
void set_account(AccountKey key, int64 credit_limit, const Period *period, const TimestampTz *anchor, bool unlimited);

/*
 * Split the account into `*count` slots (0: none), dealing out what it has
 * left among them, and pin that count; nullptr gives the account back to
 * automatic slotting.
 */
void set_slots(AccountKey key, const int32 *count);

/*
 * The account's own alert thresholds (percent of credit_limit, checked;
 * empty: none of its own, so quota.default_alerts applies); the slots'
 * shares are dealt again below the next one.
 */
void set_alerts(AccountKey key, const std::vector<int32> &thresholds);

/*
 * `cap` >= 0: the account's concurrency cap (tree.hpp): the reserve takes
 * the whole account, counts its unexpired open holds, and is denied at
 * `cap` of them, with retry_after until the earliest expires.
 */
Grant reserve(AccountKey key, int64 amount, const TimestampTz *expires_at, const Datum *idempotency_key,
              int32 cap = -1);

/*
 * What a settle found about the hold it settled (commit, release): its
 * origin (Hold::origin).  A hold that is an ancestor's part of a chain is
 * settled only through its reservation (`part` true, from tree.cpp):
 * settled by id from outside, it raises 55000.
 */
struct Settle {
    bool part = false;
    int64 origin = 0;
    uint64 account = 0; /* the hold's account (locks::account_id) */
    /*
     * For a hold made through parents (the child's): run after the hold is
     * read and before its account is locked — tree.cpp settles the
     * ancestors' parts there, so a settle locks root first, as a spend does.
     */
    std::function<void()> before_lock;
};
Grant commit(int64 reservation, const int64 *amount, Settle *settle = nullptr);

/*
 * Before a late commit of an expired hold, with its account or slot
 * locked: lock the hold's row without waiting.  Only purge_holds() can
 * hold it then; P0002 when the purge has deleted it, 55P03 while the purge
 * is under way (retry), instead of waiting for the purge with the account
 * locked.
 */
void late_commit_may_go(AccountKey key, int64 reservation);
bool release(int64 reservation, Settle *settle = nullptr);
/* `capped`: the account has a concurrency cap (tree.hpp): decided on the whole account, never given slots. */
Grant charge(AccountKey key, int64 amount, bool allow_overdraft, bool capped = false);

/*
 * set_parent(), set_concurrency(): the whole account locked as for
 * set_account() (P0002 when it does not exist), then `change` runs with it
 * held, so no spending call on it is under way.
 */
void with_account_locked(AccountKey key, const std::function<void()> &change);

/* Read-only: no row lock, never waits. */
bool is_limited(AccountKey key);

/*
 * Whether a spend of `amount` on the account would be denied from its
 * committed state now, as reserve() and charge() deny without a lock
 * ("denials at the price of a read"); no lock, never waits.  False when
 * that cannot be told so (unlimited, REPEATABLE READ, missing).
 */
bool denies_now(AccountKey key, int64 amount);

/* The account as a reply would report it now (read-only, like is_limited()); false when it does not exist. */
bool peek(AccountKey key, Usage &usage);

/* Release every expired hold, skipping accounts other transactions hold locked. */
int64 expire_holds();

/* An account row as readers see it now: rolled over, expired holds released. */
Usage current_usage(Account account, int64 expired_held, TimestampTz now);

} // namespace quota::ledger
