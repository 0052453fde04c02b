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
    int32 slots = 0; /* sub-budgets in quota.slots; 0: the account row takes every call */
};

/*
 * One slot of a slotted account (the escrow method): the used and held
 * credits of the calls it took, and `share`, the credits it may still grant
 * on its own.  For every account: used + held of the account row, plus
 * used + held + share of every slot, is at most credit_limit.  A slot never
 * goes below a zero share on its own; the calls that would make it do so
 * take the whole account instead (see ledger.cpp).
 */
struct Slot {
    TimestampTz window_start = 0; /* the window `used` belongs to */
    TimestampTz resets_at = 0;    /* meaningful only when has_resets_at */
    int64 used = 0;
    int64 held = 0;
    int64 share = 0;
    TimestampTz next_expiry = 0; /* meaningful only when has_next_expiry */
    int32 number = 0;
    bool has_resets_at = false;
    bool unlimited = false; /* share is NULL */
    bool has_next_expiry = false;
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
    /*
     * Parent budgets (tree.hpp): the reply's remaining is the least over the
     * account's chain instead of its own (NULL only when every account of
     * the chain is unlimited).
     */
    bool has_chain_remaining = false;
    bool chain_unlimited = false;
    int64 chain_remaining = 0;
};

/* The longest team or resource name, and idempotency key, in bytes. */
inline constexpr size_t kMaxNameBytes = 256;
inline constexpr size_t kMaxKeyBytes = 512;

/* Input rules: raise quota::Error with the contract's SQLSTATE. */
void check_name(const char *what, size_t length);
void check_key(size_t length);
void check_amount(int64 amount);
void check_commit_amount(int64 amount);
void check_credit_limit(int64 credit_limit);
Period check_interval(const char *what, const Interval *value);
void check_anchor(TimestampTz anchor);

/* Sum that raises 22003 instead of wrapping. */
int64 checked_add(int64 a, int64 b);

/*
 * The window of the grid anchor + k·period that contains `at` (UTC); false
 * when its start or end is outside the timestamp range.
 */
bool window_at(TimestampTz anchor, const Period &period, TimestampTz at, Window &window);

/* window_at(), raising 22008 that names the anchor and period when the window is out of range. */
Window window_or_error(TimestampTz anchor, const Period &period, TimestampTz at);

/* at + period, in UTC like the windows; false when the result is outside the timestamp range. */
bool add_interval(TimestampTz at, const Period &period, TimestampTz &out);

/* When a hold made at `now` for `hold_for` expires; 22008 naming hold_for when out of range. */
TimestampTz hold_expiry(TimestampTz now, const Period &hold_for);

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

/* A retry_after: whole seconds from `now` until `at`, at least 1 (and at most PG_INT32_MAX). */
int32 retry_after_seconds(TimestampTz at, TimestampTz now);

/* A reply row: for denials, retry_after counts the seconds until resets_at. */
Grant grant_of(const Account &account, bool granted, TimestampTz now);

/* The most slots an account may have. */
inline constexpr int32 kMaxSlots = 256;
void check_slots(int32 slots);

/* True while the slot's window is the current one: it may take calls on its own. */
bool slot_current(const Slot &slot, TimestampTz now);

/*
 * The share of a slot dealt while the account was over its limit (a lowered
 * limit, an overdraft, a commit larger than its hold): the slot grants
 * nothing, and credits its holds free later do not come back to it, since
 * they were never within the limit.  Only the whole account (the ledger)
 * settles them; its next deal gives the slot a real share again.
 */
inline constexpr int64 kFrozenShare = -1;
bool slot_frozen(const Slot &slot);

/* True when the slot can grant `amount` from its own share. */
bool slot_covers(const Slot &slot, int64 amount);

/*
 * Give the slot the account's window; true when the slot changed.  After a
 * rollover (keep_used false) a slot of an older window starts from zero
 * used; after new terms (set_account) it keeps its used, as the account does.
 */
bool align_slot(Slot &slot, const Account &account, bool keep_used);

/*
 * Slot `index`'s share of what the account has left (credit_limit less
 * every used and held credit, `totals`), dealt out as evenly as integers
 * allow among `count` slots; 0 when nothing is left, kFrozenShare when the
 * account is over its limit.  Sets the slot's share (none for an unlimited
 * account); true when it changed.
 */
bool deal_share(Slot &slot, const Account &totals, int32 index, int32 count);

/*
 * A slotted account as readers see it: `account` (rolled over) plus its
 * slots' used in their newest current window (`slots_window`) and their
 * held.  When the slots are in a newer window than the account row shows
 * (a transaction that started before a rollover), the row's used is of an
 * older window and does not count.
 */
void add_slots(Account &account, bool has_slots_window, TimestampTz slots_window, int64 slots_used, int64 slots_held);

} // namespace quota
