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
#include "budget/ledger.hpp"
#include "budget/locks.hpp"
#include "budget/settings.hpp"

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
            TransactionId *holder = nullptr, const SlotRow *first = nullptr)
{
    for (int attempt = 0; attempt < kAttempts; attempt++) {
        interruptible();
        /* `first`: this slot as the call read it already (its version, if not the newest, is reported changed). */
        if (attempt == 0 && first != nullptr)
            row = *first;
        else if (!storage::peek_slot(key, number, row))
            return Claim::Unfit;
        if (!fits(row.slot))
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

/* The slot a call tries first: the one its transaction holds (no other transaction can be in it), else its home. */
int32 first_slot(const Turn &turn, int32 count)
{
    return turn.mine >= 0 && turn.mine < count ? turn.mine : home_slot(count);
}

/* Lock a slot that can grant `amount` now: the first free one, else (if it may) wait for the first busy one. */
bool claim_covering(AccountKey key, int32 count, int64 amount, TimestampTz now, Turn &turn, SlotRow &row)
{
    auto const serves = [amount, now](const Slot &slot) { return slot_current(slot, now) && slot_covers(slot, amount); };
    int32 const start = first_slot(turn, count);
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
        bool const read = i == 0 && turn.has_first && turn.first.slot.number == number;
        Claim const found = claim(key, number, false, serves, row, &holder, read ? &turn.first : nullptr);
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

/* The account a hold belongs to, as the snapshot shows it (and where its row is), if it is slotted. */
bool slotted_account(AccountKey key, Account &account, ItemPointerData &where)
{
    return storage::fetch_account(key, account, nullptr, &where) && account.slots > 0;
}

/*
 * The other slots a granted call's reply adds, as this backend last read
 * them: read again when older than quota.reply_lag, or when the account,
 * its slot count or its row version differs (the ledger writes the row
 * whenever it deals the shares again, so a cached set is of one deal).  A
 * sum past the limit (shares moved between slots without a new deal:
 * gather_in_own_slot) is not reported: the slots are read again; nor is
 * one after a subtransaction rolled back (its own slot writes may be gone).
 * Decisions never use it.  Per backend, deliberately: one set, the last
 * account asked about.
 */
struct OtherSlots {
    uint64 account = 0;
    ItemPointerData row{};
    int32 count = -1;
    TimestampTz read_at = 0;
    TransactionId wrote = InvalidTransactionId; /* the transaction whose own slot writes are in it */
    Slot slots[kMaxSlots];
};
OtherSlots others;
bool watching_rollbacks = false;

/* A rolled-back subtransaction (a savepoint, a chain call's own) may have undone a slot write the copies hold. */
void subtransaction_event(SubXactEvent event, SubTransactionId, SubTransactionId, void *)
{
    if (event == SUBXACT_EVENT_ABORT_SUB)
        others.account = 0;
}

bool others_current(uint64 account, const Account &seen, const ItemPointerData &where, TimestampTz clock)
{
    int32 const lag = settings::reply_lag_ms();
    /* This backend's own writes are in it: only while their transaction goes on, or if it committed. */
    bool const writes_stand = bridge::guarded_value([] {
        return !TransactionIdIsValid(others.wrote) || others.wrote == GetTopTransactionIdIfAny() ||
               TransactionIdDidCommit(others.wrote);
    });
    return lag > 0 && writes_stand && others.account == account && others.count == seen.slots &&
           ItemPointerEquals(const_cast<ItemPointerData *>(&others.row), const_cast<ItemPointerData *>(&where)) &&
           clock - others.read_at <= static_cast<TimestampTz>(lag) * 1000;
}

/*
 * The reply of a call granted in slot `mine` (just written): the account
 * row as the call saw it, `mine` as it is now, the other slots as cached.
 */
Grant granted_reply(AccountKey key, const Account &seen, const ItemPointerData &where, const Slot &mine,
                    TimestampTz now)
{
    uint64 const account = locks::account_id(key);
    TimestampTz const clock = bridge::guarded_value([] { return GetCurrentTimestamp(); });
    if (!others_current(account, seen, where, clock)) {
        others.account = 0;
        Snapshot const snapshot = storage::take_snapshot(storage::Intent::Write);
        int32 const count = storage::scan_slots(key, snapshot, others.slots, kMaxSlots);
        storage::drop_snapshot(snapshot);
        if (count != seen.slots)
            return reply(key, seen, true, now); /* not as installed, or reslotted meanwhile: the exact way */
        others.account = account;
        others.row = where;
        others.count = count;
        others.read_at = clock;
        others.wrote = InvalidTransactionId;
    }
    if (!watching_rollbacks) {
        bridge::guarded([] { RegisterSubXactCallback(subtransaction_event, nullptr); });
        watching_rollbacks = true;
    }
    others.wrote = bridge::guarded_value([] { return GetTopTransactionIdIfAny(); });
    storage::SlotTotals totals;
    for (int32 i = 0; i < others.count; i++) {
        if (others.slots[i].number == mine.number)
            others.slots[i] = mine; /* this backend's own write is the newest it knows of */
        storage::add_slot_totals(totals, others.slots[i], now);
    }
    Account state = seen;
    roll_over(state, now);
    add_slots(state, totals.has_window, totals.window_start, totals.used, totals.held);
    if ((state.has_next_expiry && state.next_expiry <= now) || (totals.has_next_expiry && totals.next_expiry <= now)) {
        /* Under a snapshot that has this call's own writes: a hold it just settled is no longer open. */
        Snapshot const snapshot = storage::take_snapshot(storage::Intent::Write);
        state.held -= storage::expired_held(key, now, snapshot);
        storage::drop_snapshot(snapshot);
    }
    int64 taken = 0;
    if (!state.unlimited &&
        (__builtin_add_overflow(state.used, state.held, &taken) || taken > state.credit_limit)) {
        /* Copies that no longer add up (shares moved between slots since): read them all again. */
        others.account = 0;
        return reply(key, seen, true, now);
    }
    return grant_of(state, true, now);
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

void close_slot_window(AccountKey key, const Slot &slot, const Account &account)
{
    if (!slot.has_resets_at || slot.window_start >= account.window_start || slot.used == 0)
        return;
    storage::record_history(key,
                            storage::closed_window(account, slot.number, slot.window_start, slot.resets_at, slot.used));
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

void spend_in_slot(SlotRow &row, int64 amount)
{
    row.slot.used = checked_add(row.slot.used, amount);
    take_share(row.slot, amount);
    storage::write_slot(row);
}

int64 hold_in_slot(AccountKey key, SlotRow &row, int64 amount, TimestampTz now, const TimestampTz *expires_at,
                   const Datum *idempotency_key)
{
    Slot &slot = row.slot;
    slot.held = checked_add(slot.held, amount);
    take_share(slot, amount);
    if (expires_at != nullptr && (!slot.has_next_expiry || *expires_at < slot.next_expiry)) {
        slot.has_next_expiry = true;
        slot.next_expiry = *expires_at;
    }
    int64 const id = storage::insert_hold(key, amount, now, expires_at, idempotency_key, &slot.number);
    storage::write_slot(row);
    return id;
}

bool charge(AccountKey key, const Account &seen, const ItemPointerData &where, int64 amount, TimestampTz now,
            Turn &turn, Grant &grant)
{
    SlotRow row;
    if (!claim_covering(key, seen.slots, amount, now, turn, row))
        return false;
    expire_due(key, row.slot, now);
    spend_in_slot(row, amount);
    grant = granted_reply(key, seen, where, row.slot, now);
    return true;
}

bool reserve(AccountKey key, const Account &seen, const ItemPointerData &where, int64 amount,
             const TimestampTz *expires_at, const Datum *idempotency_key, TimestampTz now, Turn &turn, Grant &grant)
{
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
    expire_due(key, row.slot, now);
    int64 const id = hold_in_slot(key, row, amount, now, expires_at, idempotency_key);
    grant = granted_reply(key, seen, where, row.slot, now);
    grant.has_reservation = true;
    grant.reservation = id;
    return true;
}

bool commit(const Hold &seen, const int64 *amount, TimestampTz now, Turn &turn, Grant &grant)
{
    Account account;
    ItemPointerData where{};
    if (!seen.has_slot || !slotted_account(seen.key, account, where))
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
    if (hold.state == HoldState::Expired)
        ledger::late_commit_may_go(hold.key, hold.id); /* never wait for a purge with the slot locked */
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
        storage::settle_hold(hold.key, hold.id, HoldState::Committed, now, &settled);
        storage::write_slot(row);
    }
    grant = granted_reply(key, account, where, row.slot, now);
    return true;
}

bool release(const Hold &seen, TimestampTz now, Turn &turn, bool &released)
{
    Account account;
    ItemPointerData where{};
    if (!seen.has_slot || !slotted_account(seen.key, account, where))
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
        storage::settle_hold(hold.key, hold.id, expired ? HoldState::Expired : HoldState::Released, now, nullptr);
        storage::write_slot(row);
        released = !expired;
    }
    return true;
}

namespace {

/*
 * For a transaction that holds a slot of the account and cannot have the
 * rest of it now (locks.hpp): lock that slot again (it is this
 * transaction's, so this never waits), or else any free slot, in the
 * account's current window with its expired holds released.  False,
 * nothing locked, when no slot is this transaction's or free.
 */
bool own_slot(AccountKey key, const Account &seen, const Turn &turn, TimestampTz now, SlotRow &row)
{
    auto const any = [](const Slot &) { return true; };
    /* The slot it holds (locking it again never waits), else any free one: never wait here. */
    bool taken = turn.mine >= 0 && turn.mine < seen.slots && claim(key, turn.mine, false, any, row) == Claim::Taken;
    for (int32 number = 0; !taken && number < seen.slots; number++)
        taken = claim(key, number, false, any, row) == Claim::Taken;
    if (!taken)
        return false;
    Account current = seen;
    roll_over(current, now);
    bool const rolled = row.slot.window_start < current.window_start;
    close_slot_window(key, row.slot, current);
    align_slot(row.slot, current, false);
    /*
     * A share dealt in a window that has ended is not this window's to grant
     * (it was dealt against that window's credits and alert thresholds):
     * none until the ledger deals again.
     */
    if (rolled && !row.slot.unlimited && row.slot.share > 0)
        row.slot.share = 0;
    expire_due(key, row.slot, now);
    return true;
}

} // namespace

bool gather_in_own_slot(AccountKey key, const Account &seen, int64 amount, const Turn &turn, TimestampTz now,
                        SlotRow &own)
{
    if (!own_slot(key, seen, turn, now, own))
        return false;
    /* own_slot() may have released expired holds: the slot is written whatever comes of the gathering. */
    auto const give_up = [&own] {
        storage::write_slot(own);
        return false;
    };
    if (slot_frozen(own.slot))
        return give_up();
    if (slot_covers(own.slot, amount))
        return true;
    auto const has_share = [now](const Slot &slot) { return slot_current(slot, now) && slot.share > 0; };
    static SlotRow found[kMaxSlots];
    int32 count = 0;
    int64 gathered = own.slot.share;
    for (int32 number = 0; number < seen.slots && gathered < amount; number++) {
        if (number == own.slot.number || claim(key, number, false, has_share, found[count]) != Claim::Taken)
            continue;
        gathered = checked_add(gathered, found[count].slot.share);
        count++;
    }
    if (gathered < amount)
        return give_up();
    /* Shares move between slots this transaction holds: the account's total is unchanged. */
    for (int32 i = 0; i < count; i++) {
        own.slot.share = checked_add(own.slot.share, found[i].slot.share);
        found[i].slot.share = 0;
        storage::write_slot(found[i]);
        locks::took_slot(key, found[i].slot.number);
    }
    return true;
}

bool slot_could_grant(AccountKey key, const Account &seen, int64 amount, TimestampTz now, Turn &turn,
                      Snapshot snapshot)
{
    SlotRow &first = turn.first;
    turn.has_first = storage::read_slot(key, first_slot(turn, seen.slots), snapshot, storage::Intent::Write, first);
    return turn.has_first && slot_current(first.slot, now) && slot_covers(first.slot, amount);
}

bool has_credits_in_slot(AccountKey key, const Account &account, TimestampTz now)
{
    Snapshot const snapshot = storage::take_snapshot(storage::Intent::Read);
    SlotRow row;
    bool const found = storage::read_slot(key, home_slot(account.slots), snapshot, storage::Intent::Read, row);
    storage::drop_snapshot(snapshot);
    return found && slot_current(row.slot, now) && !row.slot.unlimited && row.slot.share > 0;
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
