#include "budget/ledger.hpp"

#include "bridge/error.hpp"
#include "entry/settings.hpp"

namespace quota::ledger {

namespace {

using storage::Hold;
using storage::HoldState;

/* An account row locked by this transaction, brought up to date. */
struct Locked {
    Account account;
    ItemPointerData row{};
    bool dirty = false;   /* differs from the stored row */
    int64 expired = 0;    /* holds this call released as expired */
};

TimestampTz transaction_now()
{
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

/* Lock the account and apply what time has done to it: rollover, then hold expiry. */
bool try_lock(AccountKey key, TimestampTz now, Locked &locked)
{
    if (!storage::lock_account(key, locked.account, locked.row))
        return false;
    Account &account = locked.account;
    locked.dirty = roll_over(account, now);
    if (account.has_next_expiry && account.next_expiry <= now) {
        storage::ExpiredHolds const expired = storage::expire_holds(key, now);
        account.held -= expired.amount;
        account.has_next_expiry = expired.has_next_expiry;
        account.next_expiry = expired.next_expiry;
        locked.expired = expired.count;
        locked.dirty = true;
    }
    return true;
}

/* try_lock(), creating the account with the default settings when they allow it. */
Locked lock_for_spending(AccountKey key, TimestampTz now)
{
    Locked locked;
    if (try_lock(key, now, locked))
        return locked;
    Account fresh;
    if (!default_account(now, fresh))
        unknown_account(key);
    storage::insert_account(key, fresh); /* a concurrent creator may win: then lock theirs */
    if (!try_lock(key, now, locked))
        unknown_account(key);
    return locked;
}

/* The hold and its account, locked in the extension's lock order: account first. */
Locked lock_hold(int64 reservation, TimestampTz now, Hold &hold)
{
    if (!storage::read_hold(reservation, hold))
        unknown_reservation(reservation);
    Locked locked;
    if (!try_lock(hold.key, now, locked))
        unknown_account(hold.key);
    /* Read it again: another transaction may have settled it before we got the lock. */
    if (!storage::read_hold(reservation, hold))
        unknown_reservation(reservation);
    return locked;
}

Grant reply(const Locked &locked, bool granted, TimestampTz now)
{
    Grant grant = grant_of(locked.account, granted, now);
    if (locked.dirty)
        storage::update_account(locked.row, locked.account);
    storage::finish();
    return grant;
}

} // namespace

void set_account(AccountKey key, int64 credit_limit, const Period *period, TimestampTz anchor, bool unlimited)
{
    TimestampTz const now = transaction_now();
    Period const terms = period != nullptr ? *period : Period{};
    storage::connect();
    for (;;) {
        Locked locked;
        if (try_lock(key, now, locked)) {
            /* The old terms have had their say (rollover, expiry); now the new ones apply. */
            change_terms(locked.account, credit_limit, unlimited, period != nullptr, terms, anchor, now);
            storage::update_account(locked.row, locked.account);
            break;
        }
        if (storage::insert_account(key, new_account(credit_limit, unlimited, period != nullptr, terms, anchor, now)))
            break;
        /* Created concurrently since our look: update that row instead. */
    }
    storage::finish();
}

Grant reserve(AccountKey key, int64 amount, const Period *hold_for, const Datum *idempotency_key)
{
    TimestampTz const now = transaction_now();
    storage::connect();
    Locked locked = lock_for_spending(key, now);
    Account &account = locked.account;

    Hold earlier;
    if (idempotency_key != nullptr && storage::find_hold(key, *idempotency_key, earlier)) {
        Grant grant = reply(locked, true, now);
        grant.has_reservation = true;
        grant.reservation = earlier.id;
        return grant;
    }
    if (!fits(account, amount))
        return reply(locked, false, now);

    account.held = checked_add(account.held, amount);
    TimestampTz expires_at = 0;
    if (hold_for != nullptr) {
        expires_at = add_interval(now, *hold_for);
        if (!account.has_next_expiry || expires_at < account.next_expiry) {
            account.has_next_expiry = true;
            account.next_expiry = expires_at;
        }
    }
    int64 const id =
        storage::insert_hold(key, amount, now, hold_for != nullptr ? &expires_at : nullptr, idempotency_key);
    locked.dirty = true;
    Grant grant = reply(locked, true, now);
    grant.has_reservation = true;
    grant.reservation = id;
    return grant;
}

Grant commit(int64 reservation, const int64 *amount)
{
    TimestampTz const now = transaction_now();
    storage::connect();
    Hold hold;
    Locked locked = lock_hold(reservation, now, hold);

    switch (hold.state) {
    case HoldState::Released:
        throw Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format("quota reservation %lld has already been released", static_cast<long long>(reservation)),
                    "A released reservation cannot be committed.",
                    "Reserve the credits again, or record the usage with quota.charge_credit().");
    case HoldState::Committed:
        break; /* settled once already: report, change nothing */
    case HoldState::Open:
    case HoldState::Expired: {
        Account &account = locked.account;
        if (hold.state == HoldState::Open)
            account.held -= hold.amount;
        /* Actual consumption is recorded even past the limit, and even after the hold expired. */
        int64 const settled = amount != nullptr ? *amount : hold.amount;
        account.used = checked_add(account.used, settled);
        storage::settle_hold(reservation, HoldState::Committed, now, &settled);
        locked.dirty = true;
        break;
    }
    }
    return reply(locked, true, now);
}

bool release(int64 reservation)
{
    TimestampTz const now = transaction_now();
    storage::connect();
    Hold hold;
    Locked locked = lock_hold(reservation, now, hold);

    bool released = false;
    switch (hold.state) {
    case HoldState::Committed:
        throw Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format("quota reservation %lld has already been committed", static_cast<long long>(reservation)),
                    "A committed reservation cannot be released.");
    case HoldState::Released:
    case HoldState::Expired:
        break; /* its credits are back already */
    case HoldState::Open:
        locked.account.held -= hold.amount;
        storage::settle_hold(reservation, HoldState::Released, now, nullptr);
        locked.dirty = true;
        released = true;
        break;
    }
    reply(locked, true, now);
    return released;
}

Grant charge(AccountKey key, int64 amount, bool allow_overdraft)
{
    TimestampTz const now = transaction_now();
    storage::connect();
    Locked locked = lock_for_spending(key, now);
    if (!allow_overdraft && !fits(locked.account, amount))
        return reply(locked, false, now);
    locked.account.used = checked_add(locked.account.used, amount);
    locked.dirty = true;
    return reply(locked, true, now);
}

bool is_limited(AccountKey key)
{
    TimestampTz const now = transaction_now();
    Account account;
    if (!storage::fetch_account(key, account) && !default_account(now, account))
        unknown_account(key);
    int64 expired = 0;
    if (account.has_next_expiry && account.next_expiry <= now) {
        storage::connect();
        expired = storage::expired_held(key, now);
        storage::finish();
    }
    return current_usage(account, expired, now).limited;
}

int64 expire_holds()
{
    TimestampTz const now = transaction_now();
    storage::connect();
    int64 released = 0;
    for (AccountKey const &key : storage::lock_accounts_with_expired_holds(now)) {
        Locked locked;
        if (!try_lock(key, now, locked))
            continue;
        released += locked.expired;
        if (locked.dirty)
            storage::update_account(locked.row, locked.account);
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
