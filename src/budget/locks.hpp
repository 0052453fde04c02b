/*
 * locks.hpp — which locks of an account the current transaction holds, and
 * so whether a call may wait for another transaction's lock on it.
 *
 * The rule that keeps the extension's calls free of deadlocks on slotted
 * accounts, whatever their number in one transaction:
 *
 *   1. A transaction that holds nothing of an account may wait for any lock
 *      of it (a slot, or the account row and then every slot in order).
 *   2. A transaction that holds one of its slots never waits for a lock of
 *      that account: it takes other slots only if they are free, and the
 *      account row only if it is free (FOR UPDATE NOWAIT).  Once it has the
 *      account row it may wait for the slots, since every other holder of
 *      a slot is then a transaction under this rule, which waits for
 *      nothing of this account.
 *   3. Whoever holds the account row (the whole account) already holds or
 *      may wait for everything else of it.
 *
 * So every wait is for a transaction that will not wait for the waiter:
 * no cycle can form among calls on one account.  (Calls on several
 * accounts lock them in call order; callers keep one order.)  A call under
 * rule 2 that cannot have the account row therefore answers without the
 * whole account (ledger.cpp): a spend or overdraft is granted when the
 * shares of slots free now cover it; otherwise a spend is denied, and an
 * overdraft, a settle of a hold in a slot it cannot lock, or an admin call
 * raises 55P03.
 *
 * What a transaction holds is remembered per backend for the current
 * top-level transaction, conservatively: a slot given back by a rolled-back
 * savepoint still counts as held, which only makes later calls wait less.
 */
#pragma once

#include "storage/store.hpp"

#include <memory>

namespace quota::locks {

enum class Held { Nothing, Slot, Whole };

/* A 64-bit identity of the account's key (a hash of team and resource). */
uint64 account_id(storage::AccountKey key);

/* What this transaction holds of the account. */
Held held(storage::AccountKey key);

/* The slot it holds, when held() is Slot (the last one it took; -1 when not known). */
int32 held_slot(storage::AccountKey key);

/* Remember that this transaction took slot `slot` of the account (kept if it holds the whole). */
void took_slot(storage::AccountKey key, int32 slot);

/* Remember that this transaction holds the account row (and so may take every slot). */
void took_whole(storage::AccountKey key);

/*
 * Parent budgets (tree.cpp) make one call lock several accounts (root
 * first; or its own account first and then the ancestors without waiting
 * for any of their locks, by a transaction that held none before the
 * call), and a transaction of several calls then holds an account's slot
 * while the same transaction holds locks of other accounts (its chain's,
 * from an earlier call).  Rule 2's last step — having taken the account
 * row NOWAIT, wait for the slots — is safe only while every other slot
 * holder of that account waits for nothing; a slot holder that waits for
 * one of those other accounts could close a cycle.  So a transaction that
 * holds locks of accounts beyond the ones its current call locked never
 * takes that step: for it, a slotted account whose slot cannot serve the
 * call is Busy (the ledger answers from the free slots' shares, or raises
 * 55P03 for a settle it cannot reach).  Since such a transaction then
 * never waits, and every other waits only as its chain's canonical order
 * allows, no cycle can form.
 *
 * start_call() begins a call (tree.cpp, and the ledger's admin calls);
 * in_call() adds an account the call has locked (tree.cpp, after each
 * account of a chain); holds_beyond_call(key): whether the transaction
 * holds a lock of any account other than `key` and those (when the table
 * overflowed: yes, cautiously) — read by the ledger before that step.
 */
void start_call();
void in_call(uint64 account);
bool holds_beyond_call(storage::AccountKey key);

/* Whether the transaction holds (or may hold) a lock of any account: tree.cpp's own-account-first order is for those that hold none. */
bool holds_any();

/*
 * What the table holds now, to be put back after a subtransaction of the
 * extension's own rolls back (tree.cpp): the locks taken inside it are
 * given back, and those held before it are still held, so the table is
 * exactly as it was, not just cautious.
 */
struct Saved;
struct SavedDeleter {
    void operator()(Saved *saved) const;
};
using SavedTable = std::unique_ptr<Saved, SavedDeleter>;
SavedTable save();
void restore(const SavedTable &saved);

} // namespace quota::locks
