/*
 * rules.cpp — the budget rules every call applies: input checks, rollover,
 * the limit check, and what a reply reports.
 */
#include "budget/account.hpp"

#include "bridge/error.hpp"
#include "bridge/guard.hpp"

namespace quota {

void check_name(const char *what, size_t length)
{
    if (length == 0)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, format("%s must not be empty", what),
                    format("Every quota account is named by a non-empty team and resource."));
    if (length > kMaxNameBytes)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, format("%s is too long (%zu bytes)", what, length),
                    format("A team or resource name has at most %zu bytes.", kMaxNameBytes));
}

void check_key(size_t length)
{
    if (length > kMaxKeyBytes)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, format("idempotency_key is too long (%zu bytes)", length),
                    format("An idempotency key has at most %zu bytes.", kMaxKeyBytes));
}

void check_amount(int64 amount)
{
    if (amount <= 0)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, format("invalid amount %lld", static_cast<long long>(amount)),
                    "A reservation or charge must be for at least one credit.");
}

void check_commit_amount(int64 amount)
{
    if (amount < 0)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, format("invalid amount %lld", static_cast<long long>(amount)),
                    "A commit records zero or more credits.");
}

void check_credit_limit(int64 credit_limit)
{
    if (credit_limit < 0)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE,
                    format("invalid credit_limit %lld", static_cast<long long>(credit_limit)),
                    "A credit limit must be zero or more.");
}

namespace {

/* An interval as PostgreSQL prints it (ASCII), for messages. */
std::string interval_text(const Period &period)
{
    Interval value;
    value.month = period.months;
    value.day = period.days;
    value.time = period.usec;
    return bridge::guarded_value([&] {
        return static_cast<const char *>(DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(&value))));
    });
}

/* A timestamp in ISO form, UTC, for messages (whatever the session's DateStyle and TimeZone). */
std::string timestamp_text(TimestampTz at)
{
    struct pg_tm tm = {};
    fsec_t fsec = 0;
    if (TIMESTAMP_NOT_FINITE(at) || timestamp2tm(at, nullptr, &tm, &fsec, nullptr, nullptr) != 0)
        return TIMESTAMP_IS_NOBEGIN(at) ? "-infinity" : TIMESTAMP_IS_NOEND(at) ? "infinity" : "out of range";
    bool const bc = tm.tm_year <= 0;
    return format("%04d-%02d-%02d %02d:%02d:%02d+00%s", bc ? -(tm.tm_year - 1) : tm.tm_year, tm.tm_mon, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, bc ? " BC" : "");
}

} // namespace

Period check_interval(const char *what, const Interval *value)
{
    Period period{value->month, value->day, value->time};
    bool const positive = period.months >= 0 && period.days >= 0 && period.usec >= 0 &&
                          (period.months > 0 || period.days > 0 || period.usec > 0);
    if (positive)
        return period;
    throw Error(ERRCODE_INVALID_PARAMETER_VALUE, format("invalid %s \"%s\"", what, interval_text(period).c_str()),
                format("The %s must be a positive interval: no negative field, and not zero.", what));
}

void check_anchor(TimestampTz anchor)
{
    if (TIMESTAMP_NOT_FINITE(anchor))
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, "invalid anchor", "The anchor must be a finite timestamp.");
}

Window window_or_error(TimestampTz anchor, const Period &period, TimestampTz at)
{
    Window window;
    if (!window_at(anchor, period, at, window))
        throw Error(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE,
                    format("period \"%s\" with anchor \"%s\" puts the budget window out of range",
                           interval_text(period).c_str(), timestamp_text(anchor).c_str()),
                    format("The window containing %s must start and end within the timestamp range.",
                           timestamp_text(at).c_str()));
    return window;
}

TimestampTz hold_expiry(TimestampTz now, const Period &hold_for)
{
    TimestampTz expires_at = 0;
    if (!add_interval(now, hold_for, expires_at))
        throw Error(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE,
                    format("hold_for \"%s\" is out of range", interval_text(hold_for).c_str()),
                    "now() + hold_for must be within the timestamp range.",
                    "Pass a shorter hold_for, or NULL for a hold that never expires.");
    return expires_at;
}

int64 checked_add(int64 a, int64 b)
{
    int64 sum = 0;
    /* A part may be negative (a slot that settled holds counted elsewhere, locks.hpp); only overflow is refused. */
    if (__builtin_add_overflow(a, b, &sum))
        throw Error(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "credit total out of range",
                    format("Adding %lld to %lld would overflow bigint.", static_cast<long long>(b),
                           static_cast<long long>(a)));
    return sum;
}

Account new_account(int64 credit_limit, bool unlimited, bool has_period, const Period &period, TimestampTz anchor,
                    TimestampTz now)
{
    Account account;
    account.anchor = anchor;
    account.window_start = anchor;
    change_terms(account, credit_limit, unlimited, has_period, period, anchor, now);
    return account;
}

void change_terms(Account &account, int64 credit_limit, bool unlimited, bool has_period, const Period &period,
                  TimestampTz anchor, TimestampTz now)
{
    account.credit_limit = credit_limit;
    account.unlimited = unlimited;
    account.has_period = has_period;
    account.period = has_period ? period : Period{};
    account.anchor = anchor;
    if (has_period) {
        Window const window = window_or_error(anchor, period, now);
        account.window_start = window.start;
        account.resets_at = window.end;
    } else {
        account.resets_at = 0;
    }
}

bool roll_over(Account &account, TimestampTz now)
{
    if (!account.has_period || now < account.resets_at)
        return false;
    Window const window = window_or_error(account.anchor, account.period, now);
    /* Never move back: a later transaction may already have rolled over. */
    if (window.start <= account.window_start)
        return false;
    account.window_start = window.start;
    account.resets_at = window.end;
    account.used = 0;
    return true;
}

bool fits(const Account &account, int64 amount)
{
    if (account.unlimited)
        return true;
    int64 total = 0;
    if (__builtin_add_overflow(account.used, account.held, &total) || __builtin_add_overflow(total, amount, &total))
        return false;
    return total <= account.credit_limit;
}

Usage usage_of(const Account &account)
{
    Usage usage;
    usage.unlimited = account.unlimited;
    usage.credit_limit = account.credit_limit;
    usage.used = account.used;
    usage.held = account.held;
    usage.has_period = account.has_period;
    usage.window_start = account.window_start;
    usage.resets_at = account.resets_at;

    int64 taken = 0;
    bool const overflow = __builtin_add_overflow(account.used, account.held, &taken);
    usage.limited = !account.unlimited && (overflow || taken >= account.credit_limit);
    usage.remaining = usage.limited ? 0 : account.credit_limit - taken;
    return usage;
}

int32 retry_after_seconds(TimestampTz at, TimestampTz now)
{
    int64 const wait = at - now;
    int64 seconds = (wait + USECS_PER_SEC - 1) / USECS_PER_SEC;
    if (seconds < 1)
        seconds = 1;
    if (seconds > PG_INT32_MAX)
        seconds = PG_INT32_MAX;
    return static_cast<int32>(seconds);
}

Grant grant_of(const Account &account, bool granted, TimestampTz now)
{
    Grant grant;
    grant.granted = granted;
    grant.usage = usage_of(account);
    if (!granted && account.has_period) {
        grant.has_retry_after = true;
        grant.retry_after = retry_after_seconds(account.resets_at, now);
    }
    return grant;
}

void check_slots(int32 slots)
{
    if (slots < 0 || slots > kMaxSlots)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, format("invalid slots %d", slots),
                    format("An account has from 0 (no slots) to %d slots.", kMaxSlots));
}

bool slot_current(const Slot &slot, TimestampTz now)
{
    return !slot.has_resets_at || now < slot.resets_at;
}

bool slot_frozen(const Slot &slot)
{
    return !slot.unlimited && slot.share < 0;
}

bool slot_covers(const Slot &slot, int64 amount)
{
    return slot.unlimited || slot.share >= amount;
}

bool align_slot(Slot &slot, const Account &account, bool keep_used)
{
    bool changed = false;
    if (!keep_used && slot.window_start < account.window_start && slot.used != 0) {
        slot.used = 0; /* it belongs to a window that has ended */
        changed = true;
    }
    if (slot.window_start != account.window_start || slot.has_resets_at != account.has_period ||
        (account.has_period && slot.resets_at != account.resets_at)) {
        slot.window_start = account.window_start;
        slot.has_resets_at = account.has_period;
        slot.resets_at = account.has_period ? account.resets_at : 0;
        changed = true;
    }
    return changed;
}

void add_slots(Account &account, bool has_slots_window, TimestampTz slots_window, int64 slots_used, int64 slots_held)
{
    if (has_slots_window && slots_window > account.window_start && account.has_period) {
        account.used = 0;
        Window const window = window_or_error(account.anchor, account.period, slots_window);
        account.window_start = window.start;
        account.resets_at = window.end;
    }
    if (has_slots_window && slots_window == account.window_start)
        account.used = checked_add(account.used, slots_used);
    account.held = checked_add(account.held, slots_held);
}

bool deal_share(Slot &slot, const Account &totals, int32 index, int32 count)
{
    int64 left = 0;
    bool over = false;
    if (!totals.unlimited) {
        int64 taken = 0;
        over = __builtin_add_overflow(totals.used, totals.held, &taken) || taken > totals.credit_limit;
        if (!over)
            left = totals.credit_limit - taken;
    }
    /* Over the limit (a lowered limit, an overdraft, a commit past its hold): credits freed later do not refill. */
    int64 const share = totals.unlimited ? 0 : over ? kFrozenShare : left / count + (index < left % count ? 1 : 0);
    bool const changed = slot.unlimited != totals.unlimited || slot.share != share;
    slot.unlimited = totals.unlimited;
    slot.share = share;
    return changed;
}

} // namespace quota
