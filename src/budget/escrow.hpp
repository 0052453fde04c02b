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

/* The slot a call starts looking from: the backend's own, so concurrent backends spread over the slots. */
int32 home_slot(int32 count);

/* The slot an idempotency key belongs to: retries with one key always meet in one slot. */
int32 key_slot(Datum idempotency_key, int32 count);

/*
 * Release the locked slot's holds that have expired by `now`: their credits
 * go back to its share.  Returns how many.
 */
int64 expire_due(AccountKey key, Slot &slot, TimestampTz now);

/* `seen` is the account as the call's snapshot shows it, with seen.slots > 0. */
bool charge(AccountKey key, const Account &seen, int64 amount, TimestampTz now, Grant &grant);
bool reserve(AccountKey key, const Account &seen, int64 amount, const TimestampTz *expires_at,
             const Datum *idempotency_key, TimestampTz now, Grant &grant);

/* `seen` is the hold as the call's snapshot shows it, held by a slot. */
bool commit(const Hold &seen, const int64 *amount, TimestampTz now, Grant &grant);
bool release(const Hold &seen, TimestampTz now, bool &released);

/*
 * A slotted account as a reply reports it: the account row's own used and
 * held (rolled over) plus what every slot holds now, expired holds left out.
 */
Grant reply(AccountKey key, Account seen, bool granted, TimestampTz now,
            storage::Intent intent = storage::Intent::Write);

} // namespace quota::escrow
