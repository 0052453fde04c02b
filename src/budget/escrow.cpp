/*
 * escrow.cpp — the fast path of slotted accounts (see escrow.hpp).
 *
 * A call reads a slot's newest version, judges it (is its window current,
 * can its share cover the call?), and only then locks it — exactly that
 * version (storage::lock_seen_slot).  If the slot changed in between it
 * reads it again.  So a call that finds no slot able to serve it holds no
 * slot lock when it hands over to the ledger, which takes the account row
 * and then every slot in order: no call ever waits for the account row
 * while holding a slot, and a denial is decided on the whole account.
 *
 * Charges and reserves try their home slot first, then the others, passing
 * over slots that other transactions hold (like SKIP LOCKED); only when
 * every slot that could serve them is busy do they wait, for the first.
 *
 * A slot only ever grants from its own share, and its share never goes
 * below zero here: a commit larger than what the slot can absorb goes to
 * the ledger, like every decision that needs the whole account.
 */
#include "budget/escrow.hpp"

#include "bridge/error.hpp"
#include "bridge/guard.hpp"

namespace quota::escrow {

namespace {

using storage::HoldState;
using storage::SlotLock;
using storage::SlotRow;

/* How often a call reads a slot again after it changed under it, before leaving it to the ledger. */
constexpr int kAttempts = 1000;

enum class Claim { Taken, Unfit, Busy };

/* A retry loop lets a cancel or a terminate in between its rounds. */
void interruptible()
{
    bridge::guarded([] { CHECK_FOR_INTERRUPTS(); });
}

/*
 * Lock slot `number` if its newest version passes `fits`.  Unfit: it does
 * not (or does not exist), and nothing is locked.  Busy: another
 * transaction holds it (only when !wait).
 */
template <typename Fits>
Claim claim(AccountKey key, int32 number, bool wait, const Fits &fits, SlotRow &row,
            TransactionId *holder = nullptr)
{
    for (int attempt = 0; attempt < kAttempts; attempt++) {
        interruptible();
        if (!storage::peek_slot(key, number, row) || !fits(row.slot))
            return Claim::Unfit;
        switch (storage::lock_seen_slot(row, wait, holder)) {
        case SlotLock::Taken:
            return Claim::Taken;
        case SlotLock::Busy:
            return Claim::Busy;
        case SlotLock::Changed:
            break; /* judge the newer version */
        }
    }
    return wait ? Claim::Unfit : Claim::Busy;
}

/* hash_any() of a text's bytes; call inside guarded(). */
uint32 text_hash(Datum value)
{
    struct varlena *flat = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(value)));
    return DatumGetUInt32(hash_any(reinterpret_cast<const unsigned char *>(VARDATA_ANY(flat)),
                                   static_cast<int>(VARSIZE_ANY_EXHDR(flat))));
}

/* Lock a slot that can grant `amount` now: the first free one, else (if it may) wait for the first busy one. */
bool claim_covering(AccountKey key, int32 count, int64 amount, TimestampTz now, Turn &turn, SlotRow &row)
{
    auto const serves = [amount, now](const Slot &slot) { return slot_current(slot, now) && slot_covers(slot, amount); };
    /* A transaction's later calls try the slot it holds first: no other transaction can be in it. */
    int32 const start = turn.mine >= 0 && turn.mine < count ? turn.mine : home_slot(count);
    int32 busy = -1;
    /*
     * Crowded: every slot busy, each with a different transaction.  (One
     * that holds many is taking the whole account: more slots would not help.)
     */
    bool crowded = true;
    TransactionId holders[kMaxSlots];
    for (int32 i = 0; i < count; i++) {
        int32 const number = (start + i) % count;
        TransactionId holder = InvalidTransactionId;
        Claim const found = claim(key, number, false, serves, row, &holder);
        if (found == Claim::Taken) {
            turn.slot = number;
            return true;
        }
        if (found != Claim::Busy) {
            crowded = false;
            continue;
        }
        if (busy < 0)
            busy = number;
        for (int32 j = 0; crowded && TransactionIdIsValid(holder) && j < i; j++)
            crowded = holders[j] != holder;
        holders[i] = holder;
    }
    if (busy < 0 || !turn.may_wait)
        return false;
    turn.waited = true;
    turn.crowded = crowded;
    if (claim(key, busy, true, serves, row) != Claim::Taken)
        return false;
    turn.slot = busy;
    return true;
}

/* Take `amount` from the slot's share, as a grant does (the slot covered it). */
void take_share(Slot &slot, int64 amount)
{
    if (!slot.unlimited)
        slot.share -= amount;
}

/* The account a hold belongs to, as the snapshot shows it, if it is slotted. */
bool slotted_account(AccountKey key, Account &account)
{
    return storage::slots_direct() && storage::fetch_account(key, account) && account.slots > 0;
}

/* A hold that is open but past its time counts as expired, as the ledger's lazy expiry would make it. */
bool past_expiry(const Hold &hold, TimestampTz now)
{
    return hold.state == HoldState::Open && hold.has_expires_at && hold.expires_at <= now;
}

/*
 * Lock the hold's slot for a settle.  `judge` decides, from the slot's
 * newest version and the hold as read after it, whether this path can settle
 * it (true) or the ledger must (false, nothing locked).  Locking that same
 * version guarantees the hold is still as read: every change to a slot's
 * holds also writes the slot.
 */
template <typename Judge>
bool claim_for_hold(const Hold &seen, bool may_wait, Hold &hold, SlotRow &row, const Judge &judge)
{
    for (int attempt = 0; attempt < kAttempts; attempt++) {
        interruptible();
        if (!storage::peek_slot(seen.key, seen.slot, row))
            return false;
        if (!storage::read_hold(seen.id, hold) || !hold.has_slot || hold.slot != seen.slot || !judge(row.slot, hold))
            return false;
        switch (storage::lock_seen_slot(row, may_wait)) {
        case SlotLock::Taken:
            return true;
        case SlotLock::Busy:
            return false; /* its holder may be waiting for this transaction: the ledger decides */
        case SlotLock::Changed:
            break;
        }
    }
    return false;
}

} // namespace

int32 home_slot(int32 count)
{
    /* Backend ids are small and dense (1, 2, ...): concurrent backends get different home slots. */
    return static_cast<int32>(static_cast<uint32>(MyBackendId) % static_cast<uint32>(count));
}

int32 key_slot(Datum idempotency_key, int32 count)
{
    uint32 const hash = bridge::guarded_value([&] { return text_hash(idempotency_key); });
    return static_cast<int32>(hash % static_cast<uint32>(count));
}

int64 expire_due(AccountKey key, Slot &slot, TimestampTz now)
{
    if (!slot.has_next_expiry || slot.next_expiry > now)
        return 0;
    storage::ExpiredHolds const expired = storage::expire_slot_holds(key, slot.number, now);
    slot.held -= expired.amount;
    if (!slot.unlimited && !slot_frozen(slot))
        slot.share = checked_add(slot.share, expired.amount);
    slot.has_next_expiry = expired.has_next_expiry;
    slot.next_expiry = expired.next_expiry;
    return expired.count;
}

bool charge(AccountKey key, const Account &seen, int64 amount, TimestampTz now, Turn &turn, Grant &grant)
{
    SlotRow row;
    if (!storage::slots_direct() || !claim_covering(key, seen.slots, amount, now, turn, row))
        return false;
    Slot &slot = row.slot;
    expire_due(key, slot, now);
    slot.used = checked_add(slot.used, amount);
    take_share(slot, amount);
    storage::write_slot(row);
    grant = reply(key, seen, true, now);
    return true;
}

bool reserve(AccountKey key, const Account &seen, int64 amount, const TimestampTz *expires_at,
             const Datum *idempotency_key, TimestampTz now, Turn &turn, Grant &grant)
{
    if (!storage::slots_direct())
        return false;
    SlotRow row;
    if (idempotency_key != nullptr) {
        /*
         * Calls with one key meet in one slot: a second one finds the first's
         * hold, or waits for the slot and then reads again (a reserve always
         * writes its slot, so the lock reports the slot changed).
         */
        int32 const number = key_slot(*idempotency_key, seen.slots);
        bool taken = false;
        for (int attempt = 0; attempt < kAttempts && !taken; attempt++) {
            interruptible();
            if (!storage::peek_slot(key, number, row))
                return false;
            Hold earlier;
            if (storage::find_hold(key, *idempotency_key, earlier)) {
                int64 const id = earlier.id;
                grant = reply(key, seen, true, now);
                grant.has_reservation = true;
                grant.reservation = id;
                return true;
            }
            if (!slot_current(row.slot, now) || !slot_covers(row.slot, amount))
                return false;
            SlotLock const lock = storage::lock_seen_slot(row, turn.may_wait);
            if (lock == SlotLock::Busy)
                return false; /* its holder may be waiting for this transaction: the ledger decides */
            taken = lock == SlotLock::Taken;
        }
        if (!taken)
            return false;
        turn.slot = number;
    } else if (!claim_covering(key, seen.slots, amount, now, turn, row)) {
        return false;
    }
    Slot &slot = row.slot;
    expire_due(key, slot, now);
    slot.held = checked_add(slot.held, amount);
    take_share(slot, amount);
    if (expires_at != nullptr && (!slot.has_next_expiry || *expires_at < slot.next_expiry)) {
        slot.has_next_expiry = true;
        slot.next_expiry = *expires_at;
    }
    int64 const id = storage::insert_hold(key, amount, now, expires_at, idempotency_key, &slot.number);
    storage::write_slot(row);
    grant = reply(key, seen, true, now);
    grant.has_reservation = true;
    grant.reservation = id;
    return true;
}

bool commit(const Hold &seen, const int64 *amount, TimestampTz now, Turn &turn, Grant &grant)
{
    Account account;
    if (!seen.has_slot || !slotted_account(seen.key, account))
        return false;
    AccountKey const key = seen.key;
    int64 const settled = amount != nullptr ? *amount : seen.amount;
    Hold hold;
    SlotRow row;
    bool const claimed = claim_for_hold(seen, turn.may_wait, hold, row, [settled, now](const Slot &slot, const Hold &h) {
        if (!slot_current(slot, now) || slot_frozen(slot))
            return false; /* a frozen slot's freed credits are the ledger's to settle */
        switch (h.state) {
        case HoldState::Released:
            return false; /* an error: the ledger reports it */
        case HoldState::Committed:
            return true; /* nothing to change */
        case HoldState::Open: {
            /* The hold's credits come back to the share, the actual consumption leaves it. */
            int64 share = 0;
            return slot.unlimited || (!__builtin_add_overflow(slot.share, h.amount - settled, &share) && share >= 0);
        }
        case HoldState::Expired:
            return slot.unlimited || slot.share >= settled; /* its credits came back when it expired */
        }
        return false;
    });
    if (!claimed)
        return false;
    turn.slot = seen.slot;
    if (hold.state != HoldState::Committed) {
        Slot &slot = row.slot;
        if (hold.state == HoldState::Open) {
            slot.held -= hold.amount;
            if (!slot.unlimited)
                slot.share += hold.amount;
        }
        /* Actual consumption is recorded even past the hold, and even after it expired. */
        slot.used = checked_add(slot.used, settled);
        take_share(slot, settled);
        storage::settle_hold(hold.id, HoldState::Committed, now, &settled);
        storage::write_slot(row);
    }
    grant = reply(key, account, true, now);
    return true;
}

bool release(const Hold &seen, TimestampTz now, Turn &turn, bool &released)
{
    Account account;
    if (!seen.has_slot || !slotted_account(seen.key, account))
        return false;
    Hold hold;
    SlotRow row;
    bool const claimed = claim_for_hold(seen, turn.may_wait, hold, row, [now](const Slot &slot, const Hold &h) {
        /* committed: the ledger reports it; frozen: the ledger settles the freed credits */
        return slot_current(slot, now) && !slot_frozen(slot) && h.state != HoldState::Committed;
    });
    if (!claimed)
        return false;
    turn.slot = seen.slot;
    released = false;
    if (hold.state == HoldState::Open) {
        Slot &slot = row.slot;
        slot.held -= hold.amount;
        if (!slot.unlimited)
            slot.share = checked_add(slot.share, hold.amount);
        /* Past its time it expires instead, and the call reports it was not released by it. */
        bool const expired = past_expiry(hold, now);
        storage::settle_hold(hold.id, expired ? HoldState::Expired : HoldState::Released, now, nullptr);
        storage::write_slot(row);
        released = !expired;
    }
    return true;
}

bool own_slot(AccountKey key, const Account &seen, const Turn &turn, TimestampTz now, SlotRow &row)
{
    if (turn.mine < 0 || !storage::slots_direct() || !storage::peek_slot(key, turn.mine, row) ||
        storage::lock_seen_slot(row, false) != SlotLock::Taken)
        return false;
    Account current = seen;
    roll_over(current, now);
    align_slot(row.slot, current, false);
    expire_due(key, row.slot, now);
    return true;
}

void pay_from_share(Slot &slot, int64 amount)
{
    if (slot.unlimited || slot_frozen(slot))
        return;
    slot.share = slot.share >= amount ? slot.share - amount : kFrozenShare;
}

void give_back(Slot &slot, int64 amount)
{
    if (!slot.unlimited && !slot_frozen(slot))
        slot.share = checked_add(slot.share, amount);
}

Grant reply(AccountKey key, Account seen, bool granted, TimestampTz now, storage::Intent intent)
{
    /* One snapshot for the account row, its slots and its expired holds: one consistent state. */
    Snapshot const snapshot = storage::take_snapshot(intent);
    Account fresh;
    storage::SlotTotals const slots = storage::slot_totals(key, now, snapshot, fresh);
    if (slots.has_account)
        seen = fresh;
    roll_over(seen, now);
    add_slots(seen, slots.has_window, slots.window_start, slots.used, slots.held);
    if ((seen.has_next_expiry && seen.next_expiry <= now) || (slots.has_next_expiry && slots.next_expiry <= now))
        seen.held -= storage::expired_held(key, now, snapshot);
    storage::drop_snapshot(snapshot);
    return grant_of(seen, granted, now);
}

} // namespace quota::escrow
