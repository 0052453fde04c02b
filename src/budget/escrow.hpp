/*
 * escrow.hpp — the fast path of a slotted account: a call that one slot can
 * serve locks that slot only, so calls on one hot account run side by side
 * (the escrow method; see Slot in account.hpp).
 *
 * Each function returns false, having changed nothing and holding no slot
 * lock it did not hold before, when the call needs
 * the whole account: no slot can cover it, the slot's window has ended, the
 * hold has moved, or the outcome is an error.  The ledger then takes the
 * account row and every slot in order (ledger.cpp) and decides exactly.
 */
#pragma once

#include "budget/account.hpp"
#include "storage/store.hpp"

namespace quota::escrow {

using storage::AccountKey;
using storage::Hold;
using storage::HoldState;
using storage::SlotRow;

/*
 * How a call may take its slot (locks.hpp): `may_wait` is false when the
 * transaction already holds a slot of the account, and then no call waits
 * for a slot; `mine` is that slot, tried first.  Out: `crowded`, every slot
 * was busy, each with a different transaction, and the call waited (more
 * slots would help: the ledger may add them); `slot`, the slot it took.
 */
struct Turn {
    bool may_wait = true;
    int32 mine = -1;
    bool crowded = false;
    int32 slot = -1;
    bool has_first = false; /* slot_could_grant() read the slot the claim tries first: `first` */
    SlotRow first;
};

/* The slot a call starts looking from: the backend's own, so concurrent backends spread over the slots. */
int32 home_slot(int32 count);

/* The slot an idempotency key belongs to: retries with one key always meet in one slot. */
int32 key_slot(Datum idempotency_key, int32 count);

/*
 * Before a locked slot of an older window is aligned to the account's
 * (align_slot, which zeroes its used): record what it used in that window
 * in quota.history.  The caller holds the slot.
 */
void close_slot_window(AccountKey key, const Slot &slot, const Account &account);

/*
 * Release the locked slot's holds that have expired by `now`: their credits
 * go back to its share.  Returns how many.
 */
int64 expire_due(AccountKey key, Slot &slot, TimestampTz now);

/*
 * `seen` is the account as the call's snapshot shows it, with seen.slots >
 * 0, and `where` the version of its row that snapshot found.
 */
bool charge(AccountKey key, const Account &seen, const ItemPointerData &where, int64 amount, TimestampTz now,
            Turn &turn, Grant &grant);
bool reserve(AccountKey key, const Account &seen, const ItemPointerData &where, int64 amount,
             const TimestampTz *expires_at, const Datum *idempotency_key, TimestampTz now, Turn &turn, Grant &grant);

/*
 * True when one slot (the transaction's own, else the backend's home slot)
 * can grant `amount` now under `snapshot`: then the account can, and no
 * denial can be proved from the snapshot (found with one slot read instead
 * of every slot's).  The slot read is kept in `turn`: the fast path's claim
 * starts from it instead of reading it again.
 */
bool slot_could_grant(AccountKey key, const Account &seen, int64 amount, TimestampTz now, Turn &turn,
                      Snapshot snapshot);

/*
 * True when a slot of the account (the backend's home slot) has credits to
 * deal under the reading snapshot: then the account is not limited, since
 * its used and held leave at least that share below the limit.  One read
 * for is_team_limited() on a slotted account that is not near its limit.
 */
bool has_credits_in_slot(AccountKey key, const Account &account, TimestampTz now);

/* `seen` is the hold as the call's snapshot shows it, held by a slot. */
bool commit(const Hold &seen, const int64 *amount, TimestampTz now, Turn &turn, Grant &grant);
bool release(const Hold &seen, TimestampTz now, Turn &turn, bool &released);

/*
 * For a transaction that holds a slot of the account and cannot have the
 * rest of it now (another transaction is taking the whole account and waits
 * for this one; locks.hpp): lock that slot again (never waiting), or else a
 * free one, and gather into it the shares of other slots that are free now
 * until it can grant `amount`.  True when it can (the credits are there, so
 * granting is exact: spend_in_slot() or hold_in_slot() next), false when
 * even every free slot's share is too little (its own slot is written as
 * releasing its expired holds left it, the others stay locked, unchanged).
 */
bool gather_in_own_slot(AccountKey key, const Account &seen, int64 amount, const Turn &turn, TimestampTz now,
                        SlotRow &own);

/*
 * A grant in a locked slot that covers it, written: a charge (into used),
 * or a hold (into held, with its row; returns its id).
 */
void spend_in_slot(SlotRow &row, int64 amount);
int64 hold_in_slot(AccountKey key, SlotRow &row, int64 amount, TimestampTz now, const TimestampTz *expires_at,
                   const Datum *idempotency_key);

/*
 * A slotted account as a reply reports it: the account row's own used and
 * held (rolled over) plus what every slot holds now, expired holds left out.
 * Exact (one snapshot for all of them); used by denials and readers.
 */
Grant reply(AccountKey key, Account seen, bool granted, TimestampTz now,
            storage::Intent intent = storage::Intent::Write);

} // namespace quota::escrow
