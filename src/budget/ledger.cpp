#include "budget/ledger.hpp"

#include "bridge/error.hpp"
#include "budget/alerts.hpp"
#include "budget/escrow.hpp"
#include "budget/locks.hpp"
#include "budget/settings.hpp"
#include "budget/tree.hpp"
#include "storage/delegate.hpp"

#include <algorithm>
#include <vector>

namespace quota::ledger {

namespace {

using escrow::Turn;
using locks::Held;
using storage::Hold;
using storage::HoldState;
using storage::SlotRow;

/*
 * An account row locked by this transaction, brought up to date; for a
 * slotted account, every one of its slots too, locked in slot order.
 */
struct Locked {
    AccountKey key{};
    Account account;
    ItemPointerData row{};
    bool dirty = false;   /* differs from the stored row */
    int64 expired = 0;    /* holds this call released as expired */
    std::vector<SlotRow> slots;
    std::vector<char> slot_dirty;
    std::vector<char> slot_new; /* not stored yet (set_slots, automatic slotting) */
    bool contended = false;     /* the account row was held by another transaction when this call came */
    bool crowded = false;       /* a call found every slot that could serve it busy (grow()) */
    bool unpinned = false;      /* automatic slotting changed its slots: record them as not pinned */
    bool rolled = false;        /* this call started the account's window (rollover) */
    bool alerting = false;      /* a spending call: raise the alerts it crosses (alerts.hpp) */
    bool capped = false;        /* a concurrency cap (tree.hpp): automatic slotting gives it none */
    int64 before = 0;           /* used + held of the whole account when it was locked */

    bool slotted() const { return !slots.empty(); }
};

TimestampTz transaction_now()
{
    /* A call sent to its team's shard runs at its caller's transaction time (storage/delegate.hpp), as on one node. */
    TimestampTz now = 0;
    if (storage::caller_now(now))
        return now;
    return GetCurrentTransactionStartTimestamp();
}

[[noreturn]] void unknown_account(AccountKey key)
{
    throw Error(ERRCODE_NO_DATA_FOUND,
                format("quota account \"%s\" for resource \"%s\" does not exist", storage::team_name(key),
                       storage::resource_name(key)),
                {},
                "Create it with quota.set_account(), or set quota.default_limit to create accounts on first use.");
}

[[noreturn]] void unknown_reservation(int64 reservation)
{
    throw Error(ERRCODE_NO_DATA_FOUND,
                format("quota reservation %lld does not exist", static_cast<long long>(reservation)));
}

} // namespace

void late_commit_may_go(AccountKey key, int64 reservation)
{
    if (storage::try_lock_hold(key, reservation))
        return;
    Hold gone;
    if (!storage::read_hold(reservation, gone))
        unknown_reservation(reservation);
    throw Error(ERRCODE_LOCK_NOT_AVAILABLE,
                format("could not settle quota reservation %lld now", static_cast<long long>(reservation)),
                "quota.purge_holds() is deleting it.",
                "Retry: once the purge has committed, the reservation no longer exists.");
}

namespace {

/* The account a fresh default account would be, if quota.default_limit is set. */
bool default_account(TimestampTz now, Account &account)
{
    int64 limit = 0;
    if (!settings::default_limit(limit))
        return false;
    Period period;
    bool const has_period = settings::default_period(period);
    account = new_account(limit, false, has_period, period, now, now);
    return true;
}

/* Expired holds: their credits go back (to the share, for a slot). */
template <typename Owner>
void apply_expired(Owner &owner, const storage::ExpiredHolds &expired)
{
    owner.held -= expired.amount;
    owner.has_next_expiry = expired.has_next_expiry;
    owner.next_expiry = expired.next_expiry;
}

/* What take() got. */
enum class Got { Locked, Missing, Busy };

/*
 * Lock the account and apply what time has done to it: rollover, then hold
 * expiry.  A slotted account's slots are locked too (after the account row,
 * in slot order) unless `with_slots` is false (the sweeper, which must not
 * wait for them).  With `wait` false the account row is taken only if no
 * other transaction holds it (Busy otherwise, nothing locked): the rule of
 * locks.hpp for a transaction that holds one of the account's slots.  Once
 * the row is held, waiting for the slots is safe either way.
 */
Got take(AccountKey key, TimestampTz now, Locked &locked, bool wait, bool with_slots = true,
         const ItemPointerData *seen = nullptr)
{
    locked.key = key;
    /* A transaction that holds a slot here and locks of other accounts never waits for the slots (locks.hpp). */
    if (!wait && locks::holds_beyond_call(key))
        return Got::Busy;
    /*
     * First without waiting, to see whether the account is contended (a hot
     * account gets slots).  A distributed quota has no slots: a call that
     * may wait just takes the row (on Citus each try is a statement more).
     */
    bool const try_first = !wait || !storage::distributed();
    storage::RowLock got = storage::lock_account(key, locked.account, locked.row, seen, !try_first);
    if (got == storage::RowLock::Busy) {
        if (!wait)
            return Got::Busy;
        locked.contended = true; /* another transaction has it: a sign the account is hot */
        got = storage::lock_account(key, locked.account, locked.row, seen, true);
    }
    if (got != storage::RowLock::Locked)
        return Got::Missing;
    locks::took_whole(key);
    Account &account = locked.account;
    /* The window a rollover closes (its terms stay: a rollover changes only the window and used). */
    TimestampTz const closing_start = account.window_start;
    TimestampTz const closing_end = account.resets_at;
    int64 const closing_used = account.used;
    locked.dirty = roll_over(account, now);
    locked.rolled = locked.dirty;
    if (locked.dirty)
        storage::record_history(key, storage::closed_window(account, -1, closing_start, closing_end, closing_used));
    if (account.has_next_expiry && account.next_expiry <= now) {
        storage::ExpiredHolds const expired = storage::expire_holds(key, now);
        apply_expired(account, expired);
        locked.expired += expired.count;
        locked.dirty = true;
    }
    if (account.slots > 0 && with_slots) {
        locked.slots = storage::lock_all_slots(key);
        locked.slot_dirty.assign(locked.slots.size(), 0);
        locked.slot_new.assign(locked.slots.size(), 0);
        for (size_t i = 0; i < locked.slots.size(); i++) {
            Slot &slot = locked.slots[i].slot;
            escrow::close_slot_window(key, slot, account);
            if (align_slot(slot, account, false))
                locked.slot_dirty[i] = 1;
            if (slot.has_next_expiry && slot.next_expiry <= now) {
                storage::ExpiredHolds const expired = storage::expire_slot_holds(key, slot.number, now);
                apply_expired(slot, expired);
                locked.expired += expired.count;
                locked.slot_dirty[i] = 1;
            }
        }
    }
    return Got::Locked;
}

bool try_lock(AccountKey key, TimestampTz now, Locked &locked, bool with_slots = true,
              const ItemPointerData *seen = nullptr)
{
    return take(key, now, locked, true, with_slots, seen) == Got::Locked;
}

Account totals(const Locked &locked);

/* A spending call: the alerts it crosses are raised when the account is stored (alerts.hpp). */
void watch_alerts(Locked &locked)
{
    Account const sum = totals(locked);
    locked.alerting = true;
    /*
     * A call that starts the window counts from zero: credits still held from
     * the last window reach this window's thresholds with it.
     */
    if (locked.rolled)
        locked.before = 0;
    else if (__builtin_add_overflow(sum.used, sum.held, &locked.before))
        locked.before = PG_INT64_MAX;
}

enum class Spending { Locked, Denied, Busy };

/*
 * take(), creating the account with the default settings when they allow
 * it and the call is granted on it.  A call that a fresh account would deny
 * creates nothing: then `denial` is its reply (Denied).  `seen`: where this
 * call's snapshot showed the account row, if it did.  Busy: as take().
 */
Spending lock_for_spending(AccountKey key, TimestampTz now, int64 amount, bool allow_overdraft, Locked &locked,
                           Grant &denial, const ItemPointerData *seen, bool wait)
{
    Got const got = take(key, now, locked, wait, true, seen);
    if (got == Got::Locked)
        watch_alerts(locked);
    if (got != Got::Missing)
        return got == Got::Locked ? Spending::Locked : Spending::Busy;
    Account fresh;
    if (!default_account(now, fresh))
        unknown_account(key);
    if (!allow_overdraft && !fits(fresh, amount)) {
        denial = grant_of(fresh, false, now);
        return Spending::Denied;
    }
    storage::insert_account(key, fresh); /* a concurrent creator may win: then lock theirs */
    if (!try_lock(key, now, locked))
        unknown_account(key);
    watch_alerts(locked);
    return Spending::Locked;
}

/*
 * Settle the hold, its account locked, to `to` if its state is one that
 * `from` accepts: with one guarded UPDATE when it is still as it was read,
 * and otherwise (it changed before the lock) read again and settled as it
 * is now.  True when settled; `hold` is then the hold as it was before.
 */
template <typename From>
bool settle_locked(int64 reservation, Hold &hold, const From &from, HoldState to, TimestampTz now,
                   const int64 *committed)
{
    if (!from(hold.state))
        return false;
    if (storage::settle_unchanged_hold(hold, to, now, committed))
        return true;
    if (!storage::read_hold(reservation, hold))
        unknown_reservation(reservation);
    if (!from(hold.state))
        return false;
    storage::settle_hold(hold.key, hold.id, to, now, committed);
    return true;
}

/* The whole account: its row's own used and held plus every slot's. */
Account totals(const Locked &locked)
{
    Account sum = locked.account;
    for (SlotRow const &row : locked.slots) {
        sum.used = checked_add(sum.used, row.slot.used);
        sum.held = checked_add(sum.held, row.slot.held);
    }
    return sum;
}

/* Where a slow-path call on a slotted account records its credits. */
size_t slot_index(const Locked &locked, int32 number)
{
    for (size_t i = 0; i < locked.slots.size(); i++)
        if (locked.slots[i].slot.number == number)
            return i;
    return locked.slots.size();
}

/*
 * Deal out what the account has left as the slots' shares, then write the
 * slots that changed.  Returns the whole account (totals()).
 */
Account write_back(Locked &locked)
{
    Account const sum = totals(locked);
    auto const count = static_cast<int32>(locked.slots.size());
    Account dealt = sum;
    if (count > 0)
        dealt.credit_limit = alerts::deal_limit(locked.key, sum); /* slots stop short of the next threshold */
    for (int32 i = 0; i < count; i++) {
        if (deal_share(locked.slots[i].slot, dealt, i, count)) {
            locked.slot_dirty[i] = 1;
            locked.dirty = true; /* a new deal: a new row version tells replies' caches (escrow.cpp) */
        }
        if (locked.slot_new[i])
            storage::insert_slot(locked.key, locked.slots[i].slot);
        else if (locked.slot_dirty[i])
            storage::update_slot(locked.slots[i]);
    }
    locked.slot_new.assign(locked.slots.size(), 0);
    return sum;
}

/*
 * Give the locked account `count` slots (0: none), leaving what it has
 * left to be dealt among them by write_back().  Dropped slots hand their
 * used, held and open holds to the account row.
 */
void reslot(Locked &locked, int32 count)
{
    Account &account = locked.account;
    auto const old = static_cast<int32>(locked.slots.size());
    if (count < old) {
        for (int32 i = count; i < old; i++) {
            Slot const &slot = locked.slots[i].slot;
            account.used = checked_add(account.used, slot.used);
            account.held = checked_add(account.held, slot.held);
            if (slot.has_next_expiry && (!account.has_next_expiry || slot.next_expiry < account.next_expiry)) {
                account.has_next_expiry = true;
                account.next_expiry = slot.next_expiry;
            }
        }
        storage::drop_slots_from(locked.key, count);
        locked.slots.resize(count);
        locked.slot_dirty.resize(count);
        locked.slot_new.resize(count);
    } else if (count > old) {
        storage::delete_slot_rows_from(locked.key, old); /* rows a hand-made DELETE of the account left behind */
    }
    for (int32 i = old; i < count; i++) {
        SlotRow row;
        row.slot.number = i;
        align_slot(row.slot, account, true);
        locked.slots.push_back(row);
        locked.slot_dirty.push_back(1);
        locked.slot_new.push_back(1);
    }
    account.slots = count;
    locked.dirty = true;
}

/* Credits the account has left: its limit less every used and held credit (0 when over; unlimited: a lot). */
int64 left_of(const Account &sum)
{
    if (sum.unlimited)
        return PG_INT64_MAX;
    int64 taken = 0;
    if (__builtin_add_overflow(sum.used, sum.held, &taken) || taken >= sum.credit_limit)
        return 0;
    return sum.credit_limit - taken;
}

/*
 * Automatic slotting (README, "hot accounts").  An account gets slots when
 * a call found its row held by another transaction, and twice as many
 * (up to quota.auto_slots) when a call found every slot busy; it gives them
 * back when fewer credits are left than it has slots, where they could not
 * each grant one.  Slots are only made with at least two credits per slot
 * left.  set_slots() pins an account's count, which this never changes.
 */
constexpr int32 kFirstSlots = 4;

int32 wanted_slots(const Locked &locked, const Account &sum)
{
    auto const count = static_cast<int32>(locked.slots.size());
    int32 const most = settings::auto_slots();
    int64 const left = left_of(sum);
    if (most == 0)
        return count; /* automatic slotting off: no slots made, none given back */
    if (locked.capped)
        return 0; /* its reserves count open holds on the whole account: slots would only be in the way */
    if (count > 0 && left < count)
        return 0;
    /* No slots yet: a call waited for the row.  Slots: a call waited for a slot (a busy row says nothing then). */
    if (!(count == 0 ? locked.contended : locked.crowded))
        return count;
    int32 const more = std::min(most, count == 0 ? kFirstSlots : count * 2);
    return more > count && left >= static_cast<int64>(more) * 2 ? more : count;
}

/* Apply automatic slotting to the locked account, if it is not pinned. */
void adjust_slots(Locked &locked)
{
    if (!storage::slots_direct())
        return; /* quota.slots changed by hand: slotted accounts take SQL for every call, no new ones */
    int32 const wanted = wanted_slots(locked, totals(locked));
    if (wanted == static_cast<int32>(locked.slots.size()) || !storage::slots_automatic(locked.key))
        return;
    /* A capped account gets none, whichever call found it contended (its reserves count on the whole account). */
    if (wanted > static_cast<int32>(locked.slots.size()) && (locked.capped || tree::capped(locked.key)))
        return;
    reslot(locked, wanted);
    locked.unpinned = true;
}

/*
 * Write the locked account back: automatic slotting applied (not for a
 * denial, which changes nothing an application can see, its slot count
 * included), the shares dealt, the slots and the row that changed written.
 * Returns the whole account (totals()).
 */
Account store(Locked &locked, bool reslot = true)
{
    if (reslot)
        adjust_slots(locked);
    Account const sum = write_back(locked);
    if (locked.dirty)
        storage::update_account(locked.key, locked.row, locked.account);
    if (locked.unpinned)
        storage::pin_slots(locked.key, false); /* after the row's direct update (see slots_automatic) */
    if (locked.alerting)
        alerts::raise_crossed(locked.key, sum, locked.before, transaction_now());
    return sum;
}

Grant reply(Locked &locked, bool granted, TimestampTz now)
{
    Grant grant = grant_of(store(locked, granted), granted, now);
    storage::finish();
    return grant;
}

/* The account row itself, or the slot, that records credits for a call. */
struct Target {
    int64 *used;
    int64 *held;
    bool *has_next_expiry;
    TimestampTz *next_expiry;
    const int32 *slot; /* for the hold row; nullptr: the account row */
};

Target target_of(Locked &locked, size_t index)
{
    if (index >= locked.slots.size()) {
        locked.dirty = true;
        Account &a = locked.account;
        return Target{&a.used, &a.held, &a.has_next_expiry, &a.next_expiry, nullptr};
    }
    locked.slot_dirty[index] = 1;
    Slot &s = locked.slots[index].slot;
    return Target{&s.used, &s.held, &s.has_next_expiry, &s.next_expiry, &s.number};
}

/* The hold's owner: its slot, or the account row (also when the slot is gone). */
Target hold_target(Locked &locked, const Hold &hold)
{
    return target_of(locked, hold.has_slot ? slot_index(locked, hold.slot) : locked.slots.size());
}

/* A new spend on a slotted account goes to the backend's home slot; keyed reserves to the key's. */
Target spend_target(Locked &locked, const Datum *idempotency_key)
{
    if (!locked.slotted())
        return target_of(locked, 0);
    auto const count = static_cast<int32>(locked.slots.size());
    int32 const number =
        idempotency_key != nullptr ? escrow::key_slot(*idempotency_key, count) : escrow::home_slot(count);
    return target_of(locked, slot_index(locked, number));
}

/*
 * The account as a fresh snapshot of this call shows it, and where its row
 * is; the snapshot stays registered (so that version is not pruned) until
 * the call has locked the row or given up.
 */
struct Look {
    Snapshot snapshot = nullptr;
    bool exists = false;
    Account account;
    ItemPointerData where{};

    const ItemPointerData *row() const { return exists ? &where : nullptr; }
};

Look look_up(AccountKey key)
{
    Look look;
    look.snapshot = storage::take_snapshot(storage::Intent::Write);
    look.exists = storage::fetch_account(key, look.account, look.snapshot, &look.where);
    return look;
}

/* End the call's SPI connection and reply. */
Grant finish_with(const Grant &grant)
{
    storage::finish();
    return grant;
}

/* How this call may take a slot of the account, given what the transaction holds of it (locks.hpp). */
Turn turn_for(AccountKey key)
{
    Turn turn;
    Held const held = locks::held(key);
    turn.may_wait = held != Held::Slot;
    turn.mine = held == Held::Slot ? locks::held_slot(key) : -1;
    return turn;
}

/*
 * Whether the call may wait for the account row: unless the transaction
 * holds one of its slots.  An account its snapshot shows without slots has
 * none this transaction could hold (dropping slots takes every one of them).
 */
bool may_wait(const Turn &turn, const Look &look)
{
    return turn.may_wait || !look.exists || look.account.slots == 0;
}

/*
 * A call found every slot busy, each with a different transaction, and
 * waited: give the account more slots, if its row is free (this
 * transaction now holds a slot, so it takes nothing it would have to wait
 * for; then waiting for the slots is safe).
 */
void grow(AccountKey key, TimestampTz now)
{
    /* Pinned (read without a lock: only to save taking the whole account for nothing). */
    if (settings::auto_slots() == 0 || !storage::slots_automatic(key))
        return;
    Locked locked;
    if (take(key, now, locked, false) != Got::Locked)
        return;
    locked.crowded = true;
    store(locked);
}

/* After the fast path served a call: remember its slot, and grow the slots if it had to wait for one. */
void after_fast_path(AccountKey key, const Turn &turn, TimestampTz now)
{
    if (turn.slot < 0)
        return; /* denied from the snapshot: nothing taken */
    locks::took_slot(key, turn.slot);
    if (turn.crowded)
        grow(key, now);
}

/*
 * set_account(), set_slots(): the whole account, waiting for it unless the
 * transaction holds one of its slots; then, if another transaction is
 * taking the account (and so waits for this one), 55P03 instead of a
 * deadlock.  False when the account does not exist.
 */
bool lock_for_admin(AccountKey key, TimestampTz now, Locked &locked)
{
    locks::start_call();
    Got got = take(key, now, locked, locks::held(key) != Held::Slot);
    if (got == Got::Busy) {
        Account seen;
        if (storage::fetch_account(key, seen) && seen.slots > 0)
            throw Error(ERRCODE_LOCK_NOT_AVAILABLE,
                        format("quota account \"%s\" for resource \"%s\" is being changed by another transaction",
                               storage::team_name(key), storage::resource_name(key)),
                        "This transaction holds one of the account's slots, and the other transaction waits for it.",
                        "Change the account in a transaction that has not spent from it.");
        got = take(key, now, locked, true); /* no slots: none of them is this transaction's */
    }
    return got == Got::Locked;
}

/*
 * The hold's account (and slots), locked in the extension's lock order:
 * account first.  The hold was read before, without a lock; every settler
 * holds the account or the hold's slot, so from now on the hold cannot
 * change, but it may have changed before (see settle_locked).  A
 * transaction that holds a slot of the account takes its row only if it is
 * free (locks.hpp); if another transaction is taking the whole account, it
 * waits for this one, and the hold's slot (not this transaction's, or the
 * fast path would have settled it) is out of reach: 55P03, rather than a
 * deadlock.
 */
Locked lock_hold_account(const Hold &hold, int64 reservation, TimestampTz now, const Turn &turn)
{
    Locked locked;
    Got const got = take(hold.key, now, locked, turn.may_wait);
    if (got == Got::Busy)
        throw Error(ERRCODE_LOCK_NOT_AVAILABLE,
                    format("could not settle quota reservation %lld now", static_cast<long long>(reservation)),
                    "Another transaction is taking its whole account and waits for a slot of that account this "
                    "transaction holds.",
                    "Settle it in a transaction that has not spent from that account, or retry this one.");
    if (got != Got::Locked)
        unknown_account(hold.key);
    return locked;
}

/*
 * Denials at the price of a read: when the committed state a fresh
 * snapshot shows (rolled over, expired holds released, a slotted account's
 * slots added) already cannot cover `amount`, the call is denied from it,
 * with no lock, no transaction id and no write.  The denial linearizes at
 * that snapshot, taken in the call itself (after CommandCounterIncrement,
 * so the transaction's own changes are in it), which a denial may: it
 * spends nothing, and whatever commits later is seen by the next call.
 * Only in READ COMMITTED, where that snapshot is the present (a
 * transaction snapshot may be older).  A reserve whose idempotency key
 * already has a hold is not a denial: the locking path returns that hold.
 */
bool denied_by_snapshot(AccountKey key, const Look &look, int64 amount, const Datum *idempotency_key, Turn &turn,
                        TimestampTz now, Grant &denial)
{
    Account const &seen = look.account;
    if (seen.unlimited || IsolationUsesXactSnapshot())
        return false;
    Grant grant;
    if (seen.slots > 0) {
        /* Usually one slot read shows the call can be granted: then there is nothing to prove. */
        if (escrow::slot_could_grant(key, seen, amount, now, turn, look.snapshot))
            return false;
        grant = escrow::reply(key, seen, false, now, storage::Intent::Write);
    } else {
        Account state = seen;
        roll_over(state, now);
        if (state.has_next_expiry && state.next_expiry <= now)
            state.held -= storage::expired_held(key, now, look.snapshot);
        grant = grant_of(state, false, now);
    }
    Usage const &usage = grant.usage;
    int64 taken = 0;
    bool const covered = !__builtin_add_overflow(usage.used, usage.held, &taken) &&
                         !__builtin_add_overflow(taken, amount, &taken) && taken <= usage.credit_limit;
    if (covered)
        return false;
    Hold earlier;
    if (idempotency_key != nullptr && storage::find_hold(key, *idempotency_key, earlier))
        return false;
    denial = grant;
    return true;
}

/* An ancestor's part of a hold made through parents is settled through its reservation only. */
void settled_as_whole(const Hold &hold, Settle *settle)
{
    if (settle != nullptr) {
        settle->origin = hold.origin;
        settle->account = locks::account_id(hold.key);
    }
    if (hold.origin != 0 && hold.origin == hold.id && settle != nullptr && settle->before_lock)
        settle->before_lock(); /* the ancestors' parts first: root first, as a spend locks them */
    if (hold.origin == 0 || hold.origin == hold.id || (settle != nullptr && settle->part))
        return;
    throw Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format("quota reservation %lld is part of reservation %lld", static_cast<long long>(hold.id),
                       static_cast<long long>(hold.origin)),
                "It holds credits of a parent account for that reservation.",
                format("Commit or release reservation %lld.", static_cast<long long>(hold.origin)));
}

} // namespace

void set_account(AccountKey key, int64 credit_limit, const Period *period, const TimestampTz *anchor, bool unlimited)
{
    TimestampTz const now = transaction_now();
    Period const terms = period != nullptr ? *period : Period{};
    storage::begin_call(storage::Intent::Write);
    storage::connect();
    for (;;) {
        Locked locked;
        if (lock_for_admin(key, now, locked)) {
            /* The old terms have had their say (rollover, expiry); now the new ones apply, on the same grid by default. */
            TimestampTz const grid = anchor != nullptr ? *anchor : locked.account.anchor;
            change_terms(locked.account, credit_limit, unlimited, period != nullptr, terms, grid, now);
            locked.dirty = true;
            for (size_t i = 0; i < locked.slots.size(); i++) {
                if (align_slot(locked.slots[i].slot, locked.account, true))
                    locked.slot_dirty[i] = 1;
            }
            reply(locked, true, now);
            return;
        }
        Account const fresh =
            new_account(credit_limit, unlimited, period != nullptr, terms, anchor != nullptr ? *anchor : now, now);
        if (storage::insert_account(key, fresh))
            break;
        /* Created concurrently since our look: update that row instead. */
    }
    storage::finish();
}

void set_slots(AccountKey key, const int32 *count)
{
    if (storage::distributed())
        throw Error(ERRCODE_FEATURE_NOT_SUPPORTED, "slots are not available on a distributed quota",
                    "On Citus an account's calls are spread over its team's shard only; hot accounts take turns "
                    "on their row.",
                    {});
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Write);
    storage::connect();
    Locked locked;
    if (!lock_for_admin(key, now, locked))
        unknown_account(key);
    if (count != nullptr)
        reslot(locked, *count);
    write_back(locked); /* deals the shares, writes the slots */
    storage::update_account(locked.key, locked.row, locked.account);
    /* After the row's update: a count given pins it, NULL gives it back to automatic slotting. */
    storage::pin_slots(key, count != nullptr);
    storage::finish();
}

void set_alerts(AccountKey key, const std::vector<int32> &thresholds)
{
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Write);
    storage::connect();
    Locked locked;
    if (!lock_for_admin(key, now, locked))
        unknown_account(key);
    storage::write_thresholds(key, thresholds);
    alerts::remember(key, thresholds); /* this backend at once; the others when the change commits (the trigger) */
    write_back(locked);   /* the slots' shares stop short of the new next threshold */
    storage::update_account(locked.key, locked.row, locked.account);
    storage::finish();
}

Grant reserve(AccountKey key, int64 amount, const TimestampTz *expires_at, const Datum *idempotency_key, int32 cap)
{
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Write);
    storage::connect();
    Look const look = look_up(key);
    Account const &seen = look.account;
    Turn turn = turn_for(key);
    Grant fast;
    /* A capped account counts its open holds with the whole account locked: no slot fast path. */
    if (look.exists && (denied_by_snapshot(key, look, amount, idempotency_key, turn, now, fast) ||
                        (cap < 0 && seen.slots > 0 &&
                         escrow::reserve(key, seen, look.where, amount, expires_at, idempotency_key, now, turn,
                                         fast)))) {
        storage::drop_snapshot(look.snapshot);
        after_fast_path(key, turn, now);
        storage::finish();
        return fast;
    }
    Locked locked;
    Grant denial;
    Spending const got =
        lock_for_spending(key, now, amount, false, locked, denial, look.row(), may_wait(turn, look));
    storage::drop_snapshot(look.snapshot);
    if (got != Spending::Locked) {
        Hold earlier;
        /* Busy: this transaction holds a slot, and another is taking the whole account, waiting for it (locks.hpp). */
        if (got == Spending::Busy) {
            SlotRow own;
            if (idempotency_key != nullptr && storage::find_hold(key, *idempotency_key, earlier)) {
                denial = escrow::reply(key, seen, true, now);
                denial.has_reservation = true;
                denial.reservation = earlier.id;
            } else if (cap >= 0) {
                throw Error(ERRCODE_LOCK_NOT_AVAILABLE,
                            format("could not count the open holds of quota account \"%s\" for resource \"%s\" now",
                                   storage::team_name(key), storage::resource_name(key)),
                            "Another transaction is taking the whole account and waits for a slot of it this "
                            "transaction holds; a capped reserve needs the whole account.",
                            "Reserve in a transaction that has not spent from that account, or retry this one.");
            } else if (idempotency_key == nullptr && escrow::gather_in_own_slot(key, seen, amount, turn, now, own)) {
                /* Free slots' shares cover it: granted in this transaction's slot, exactly.  (A keyed
                   reserve belongs in its key's slot, where retries meet: it is denied instead.) */
                int64 const id = escrow::hold_in_slot(key, own, amount, now, expires_at, nullptr);
                locks::took_slot(key, own.slot.number);
                Grant grant = escrow::reply(key, seen, true, now);
                grant.has_reservation = true;
                grant.reservation = id;
                return finish_with(grant);
            } else {
                denial = escrow::reply(key, seen, false, now);
            }
        }
        storage::finish();
        return denial;
    }

    locked.capped = cap >= 0;
    Hold earlier;
    if (idempotency_key != nullptr && storage::find_hold(key, *idempotency_key, earlier)) {
        int64 const id = earlier.id;
        Grant grant = reply(locked, true, now);
        grant.has_reservation = true;
        grant.reservation = id;
        return grant;
    }
    if (!fits(locked.slotted() ? totals(locked) : locked.account, amount))
        return reply(locked, false, now);
    if (cap >= 0) {
        /* Every holder of the account's slots has committed or rolled back: a fresh count is exact. */
        storage::OpenHolds const open = storage::open_holds(key, now);
        if (open.count >= cap) {
            /* Until the earliest expires; never, when none expires or the cap is 0. */
            Grant capped = reply(locked, false, now);
            capped.has_retry_after = open.has_earliest && cap > 0;
            capped.retry_after = capped.has_retry_after ? retry_after_seconds(open.earliest, now) : 0;
            return capped;
        }
    }

    Target const target = spend_target(locked, idempotency_key);
    *target.held = checked_add(*target.held, amount);
    if (expires_at != nullptr && (!*target.has_next_expiry || *expires_at < *target.next_expiry)) {
        *target.has_next_expiry = true;
        *target.next_expiry = *expires_at;
    }
    int64 const id = storage::insert_hold(key, amount, now, expires_at, idempotency_key, target.slot);
    Grant grant = reply(locked, true, now);
    grant.has_reservation = true;
    grant.reservation = id;
    return grant;
}

Grant commit(int64 reservation, const int64 *amount, Settle *settle)
{
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Write);
    storage::connect();
    Hold hold;
    if (!storage::read_hold(reservation, hold))
        unknown_reservation(reservation);
    settled_as_whole(hold, settle);
    Turn turn = turn_for(hold.key);
    Grant fast;
    if (escrow::commit(hold, amount, now, turn, fast)) {
        after_fast_path(hold.key, turn, now);
        storage::finish();
        return fast;
    }

    /* Actual consumption is recorded even past the limit, and even after the hold expired. */
    int64 const settled = amount != nullptr ? *amount : hold.amount;
    auto const open_or_expired = [](HoldState state) { return state == HoldState::Open || state == HoldState::Expired; };
    /* An ancestor's part is named by its reservation, the only id the caller knows. */
    int64 const shown = settle != nullptr && settle->part ? hold.origin : reservation;
    auto const refuse_released = [shown](const Hold &h) {
        if (h.state == HoldState::Released)
            throw Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format("quota reservation %lld has already been released", static_cast<long long>(shown)),
                        "A released reservation cannot be committed.",
                        "Reserve the credits again, or record the usage with quota.charge_credit().");
    };

    Locked locked = lock_hold_account(hold, reservation, now, turn);
    if (hold.state == HoldState::Expired)
        late_commit_may_go(hold.key, reservation); /* never wait for a purge with the account locked */
    watch_alerts(locked); /* a commit past its hold, or of an expired one, may cross a threshold */
    if (settle_locked(reservation, hold, open_or_expired, HoldState::Committed, now, &settled)) {
        Target const target = hold_target(locked, hold);
        if (hold.state == HoldState::Open)
            *target.held -= hold.amount;
        *target.used = checked_add(*target.used, settled);
    } else {
        refuse_released(hold);
    } /* else committed once already: report, change nothing */
    return reply(locked, true, now);
}

bool release(int64 reservation, Settle *settle)
{
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Write);
    storage::connect();
    Hold hold;
    if (!storage::read_hold(reservation, hold))
        unknown_reservation(reservation);
    settled_as_whole(hold, settle);
    Turn turn = turn_for(hold.key);
    bool released = false;
    if (escrow::release(hold, now, turn, released)) {
        after_fast_path(hold.key, turn, now);
        storage::finish();
        return released;
    }

    auto const open = [](HoldState state) { return state == HoldState::Open; };
    int64 const shown = settle != nullptr && settle->part ? hold.origin : reservation;
    auto const refuse_committed = [shown](const Hold &h) {
        if (h.state == HoldState::Committed)
            throw Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format("quota reservation %lld has already been committed", static_cast<long long>(shown)),
                        "A committed reservation cannot be released.");
    };
    Locked locked = lock_hold_account(hold, reservation, now, turn);
    if (settle_locked(reservation, hold, open, HoldState::Released, now, nullptr)) {
        Target const target = hold_target(locked, hold);
        *target.held -= hold.amount;
        released = true;
    } else {
        refuse_committed(hold);
    } /* else released or expired already: its credits are back */
    reply(locked, true, now);
    return released;
}

Grant charge(AccountKey key, int64 amount, bool allow_overdraft, bool capped)
{
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Write);
    storage::connect();
    Look const look = look_up(key);
    Account const &seen = look.account;
    Turn turn = turn_for(key);
    Grant fast;
    if (look.exists && ((!allow_overdraft && denied_by_snapshot(key, look, amount, nullptr, turn, now, fast)) ||
                        (seen.slots > 0 && !capped && escrow::charge(key, seen, look.where, amount, now, turn, fast)))) {
        storage::drop_snapshot(look.snapshot);
        after_fast_path(key, turn, now);
        storage::finish();
        return fast;
    }
    Locked locked;
    Grant denial;
    Spending const got =
        lock_for_spending(key, now, amount, allow_overdraft, locked, denial, look.row(), may_wait(turn, look));
    storage::drop_snapshot(look.snapshot);
    if (got == Spending::Busy) {
        /* This transaction holds a slot and another is taking the whole account, waiting for it (locks.hpp). */
        SlotRow own;
        if (escrow::gather_in_own_slot(key, seen, amount, turn, now, own)) {
            /* Free slots' shares cover it: granted in this transaction's slot, exactly. */
            escrow::spend_in_slot(own, amount);
            locks::took_slot(key, own.slot.number);
            return finish_with(escrow::reply(key, seen, true, now));
        }
        if (allow_overdraft) {
            /*
             * Past what the free slots hold, an overdraft would need every slot frozen (or the other
             * slots would go on granting from their shares while the account is over its limit), and
             * some are in the other transaction's hands.
             */
            throw Error(ERRCODE_LOCK_NOT_AVAILABLE,
                        format("could not record the overdraft on quota account \"%s\" for resource \"%s\" now",
                               storage::team_name(key), storage::resource_name(key)),
                        "Another transaction is taking the whole account and waits for a slot this transaction "
                        "holds, and the free slots' shares do not cover the overdraft.",
                        "Retry the transaction.");
        }
        denial = escrow::reply(key, seen, false, now); /* what is left is in the other transaction's reach */
    }
    if (got != Spending::Locked) {
        storage::finish();
        return denial;
    }
    locked.capped = capped;
    if (!allow_overdraft && !fits(locked.slotted() ? totals(locked) : locked.account, amount))
        return reply(locked, false, now);
    Target const target = spend_target(locked, nullptr);
    *target.used = checked_add(*target.used, amount);
    return reply(locked, true, now);
}

bool is_limited(AccountKey key)
{
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Read);
    Account account;
    if (!storage::fetch_account(key, account) && !default_account(now, account))
        unknown_account(key);
    if (account.slots > 0) {
        if (account.unlimited)
            return false;
        /* Credits still dealt to a slot: not limited, known from one more read. */
        if (escrow::has_credits_in_slot(key, account, now))
            return false;
        storage::connect();
        Grant const grant = escrow::reply(key, account, true, now, storage::Intent::Read);
        storage::finish();
        return grant.usage.limited;
    }
    int64 expired = 0;
    if (account.has_next_expiry && account.next_expiry <= now) {
        storage::connect();
        expired = storage::expired_held(key, now);
        storage::finish();
    }
    return current_usage(account, expired, now).limited;
}

void with_account_locked(AccountKey key, const std::function<void()> &change)
{
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Write);
    storage::connect();
    Locked locked;
    if (!lock_for_admin(key, now, locked))
        unknown_account(key);
    change();
    write_back(locked); /* what take() did (rollover, expiry) is stored, as by set_alerts() */
    storage::update_account(locked.key, locked.row, locked.account);
    storage::finish();
}

bool denies_now(AccountKey key, int64 amount)
{
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Write);
    storage::connect();
    Look const look = look_up(key);
    Turn turn = turn_for(key);
    Grant denial;
    bool const denies = look.exists && denied_by_snapshot(key, look, amount, nullptr, turn, now, denial);
    storage::drop_snapshot(look.snapshot);
    storage::finish();
    return denies;
}

bool peek(AccountKey key, Usage &usage)
{
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Read);
    Account account;
    if (!storage::fetch_account(key, account))
        return false;
    if (account.slots > 0) {
        storage::connect();
        Grant const grant = escrow::reply(key, account, true, now, storage::Intent::Read);
        storage::finish();
        usage = grant.usage;
        return true;
    }
    int64 expired = 0;
    if (account.has_next_expiry && account.next_expiry <= now) {
        storage::connect();
        expired = storage::expired_held(key, now);
        storage::finish();
    }
    usage = current_usage(account, expired, now);
    return true;
}

int64 expire_holds()
{
    TimestampTz const now = transaction_now();
    storage::begin_call(storage::Intent::Write);
    storage::connect();
    int64 released = 0;
    /* The account rows' own holds; the rows are locked already (SKIP LOCKED), the slots are not waited for. */
    for (AccountKey const &key : storage::lock_accounts_with_expired_holds(now)) {
        Locked locked;
        if (!try_lock(key, now, locked, false))
            continue;
        released += locked.expired;
        if (locked.dirty)
            storage::update_account(locked.key, locked.row, locked.account);
    }
    /* The slots' holds: each slot locked (SKIP LOCKED) on its own; their credits go back to its share. */
    for (storage::LockedSlot &found : storage::lock_slots_with_expired_holds(now)) {
        locks::took_slot(found.key, found.row.slot.number);
        released += escrow::expire_due(found.key, found.row.slot, now);
        storage::update_slot(found.row);
    }
    storage::finish();
    return released;
}

Usage current_usage(Account account, int64 expired_held, TimestampTz now)
{
    roll_over(account, now);
    account.held -= expired_held;
    return usage_of(account);
}

} // namespace quota::ledger
