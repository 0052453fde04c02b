/*
 * account.hpp — the budget model: one account's state and the rules that
 * every call applies to it (rollover, the limit check, settling, what a
 * reply reports).  Plain data and pure functions: no SQL here; storage/
 * reads and writes these structs, ledger.cpp strings the steps together.
 */
#pragma once

#include "pg.hpp"

namespace quota {

/* A budget period: PostgreSQL's interval fields, all non-negative. */
struct Period {
    int32 months = 0;
    int32 days = 0;
    int64 usec = 0;
};

struct Window {
    TimestampTz start = 0;
    TimestampTz end = 0;
};

struct Account {
    int64 credit_limit = 0;
    bool unlimited = false;
    bool has_period = false; /* false: the budget never resets */
    Period period;
    TimestampTz anchor = 0;
    TimestampTz window_start = 0;
    TimestampTz resets_at = 0; /* meaningful only when has_period */
    int64 used = 0;
    int64 held = 0;
    /* A lower bound of the open holds' expiry times; none when no open hold can expire. */
    bool has_next_expiry = false;
    TimestampTz next_expiry = 0;
};

/* What every reply reports about an account (grant rows, quota.usage). */
struct Usage {
    bool unlimited = false;
    int64 credit_limit = 0; /* NULL in SQL when unlimited */
    int64 used = 0;
    int64 held = 0;
    int64 remaining = 0; /* NULL in SQL when unlimited */
    bool has_period = false;
    TimestampTz window_start = 0;
    TimestampTz resets_at = 0; /* NULL in SQL when !has_period */
    bool limited = false;
};

/* One row of type quota.grant. */
struct Grant {
    bool granted = false;
    bool has_reservation = false;
    int64 reservation = 0;
    Usage usage;
    bool has_retry_after = false;
    int32 retry_after = 0;
};

/* Input rules: raise quota::Error with the contract's SQLSTATE. */
void check_name(const char *what, size_t length);
void check_amount(int64 amount);
void check_commit_amount(int64 amount);
void check_credit_limit(int64 credit_limit);
Period check_interval(const char *what, const Interval *value);
void check_anchor(TimestampTz anchor);

/* Sum that raises 22003 instead of wrapping. */
int64 checked_add(int64 a, int64 b);

/* The window of the grid anchor + k·period that contains `at` (UTC). */
Window window_at(TimestampTz anchor, const Period &period, TimestampTz at);

/* A brand-new account's state. */
Account new_account(int64 credit_limit, bool unlimited, bool has_period, const Period &period, TimestampTz anchor,
                    TimestampTz now);

/* Change an account's terms, keeping used and held of the current window. */
void change_terms(Account &account, int64 credit_limit, bool unlimited, bool has_period, const Period &period,
                  TimestampTz anchor, TimestampTz now);

/* Start the window that contains `now` if the stored one has ended; true when it did. */
bool roll_over(Account &account, TimestampTz now);

/* True when `amount` more credits fit next to used + held. */
bool fits(const Account &account, int64 amount);

/* The account as a reply reports it. */
Usage usage_of(const Account &account);

/* A reply row: for denials, retry_after counts the seconds until resets_at. */
Grant grant_of(const Account &account, bool granted, TimestampTz now);

/* now() + hold_for, in UTC like the windows. */
TimestampTz add_interval(TimestampTz at, const Period &period);

} // namespace quota
