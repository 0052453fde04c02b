/*
 * window.cpp — budget periods on the grid anchor + k·period, in UTC.
 *
 * A timestamptz is microseconds since 2000-01-01 00:00 UTC; read as a
 * timestamp without time zone it is the UTC wall clock, so PostgreSQL's
 * month and day arithmetic on it (timestamp + interval) is UTC whatever the
 * session's TimeZone.  Window k always starts at anchor + k·period,
 * computed from the anchor, so monthly windows never drift from a 31st.
 *
 * Every step is checked arithmetic that reports "out of range" as a return
 * value: no PostgreSQL function here can raise an error, so this file needs
 * no guard and nothing can wrap, divide by zero or leave the timestamp range
 * unnoticed.  The callers turn a false into an error naming the argument.
 */
#include "budget/account.hpp"

#include <limits>

namespace quota {

namespace {

constexpr int64 kMicrosPerDay = INT64CONST(86400000000);
/* A Gregorian month on average: 365.2425 / 12 days. */
constexpr int64 kMicrosPerMonth = INT64CONST(2629746000000);

using Wide = __int128;

/* Steps from the estimate to the exact window: a few at most; more means the grid leaves the range. */
constexpr int kMaxSteps = 64;

Wide floor_div(Wide a, Wide b)
{
    Wide q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

bool valid_timestamp(Wide value)
{
    return value >= MIN_TIMESTAMP && value < END_TIMESTAMP;
}

/* The UTC calendar date and time of a valid timestamp. */
bool to_calendar(TimestampTz at, struct pg_tm &tm, fsec_t &fsec)
{
    return timestamp2tm(at, nullptr, &tm, &fsec, nullptr, nullptr) == 0;
}

bool from_calendar(struct pg_tm &tm, fsec_t fsec, TimestampTz &out)
{
    Timestamp result = 0;
    if (tm2timestamp(&tm, fsec, nullptr, &result) != 0)
        return false;
    out = result;
    return true;
}

/* at + months, clamping the day of month as PostgreSQL does (Jan 31 + 1 month = Feb 28/29). */
bool add_months(TimestampTz &at, int64 months)
{
    struct pg_tm tm = {};
    fsec_t fsec = 0;
    if (!to_calendar(at, tm, fsec))
        return false;
    int64 const month_index = static_cast<int64>(tm.tm_year) * MONTHS_PER_YEAR + (tm.tm_mon - 1) + months;
    int64 const year = month_index >= 0 ? month_index / MONTHS_PER_YEAR : -((-month_index - 1) / MONTHS_PER_YEAR) - 1;
    if (year > JULIAN_MAXYEAR || year < -JULIAN_MAXYEAR)
        return false;
    tm.tm_year = static_cast<int>(year);
    tm.tm_mon = static_cast<int>(month_index - year * MONTHS_PER_YEAR) + 1;
    int const last_day = day_tab[isleap(tm.tm_year)][tm.tm_mon - 1];
    if (tm.tm_mday > last_day)
        tm.tm_mday = last_day;
    return from_calendar(tm, fsec, at);
}

/* at + days, through the Julian day number as PostgreSQL does. */
bool add_days(TimestampTz &at, int64 days)
{
    struct pg_tm tm = {};
    fsec_t fsec = 0;
    if (!to_calendar(at, tm, fsec))
        return false;
    int64 const julian = static_cast<int64>(date2j(tm.tm_year, tm.tm_mon, tm.tm_mday)) + days;
    if (julian < 0 || julian >= TIMESTAMP_END_JULIAN)
        return false;
    j2date(static_cast<int>(julian), &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
    return from_calendar(tm, fsec, at);
}

/* anchor + k·period: each field multiplied by k, as PostgreSQL's integer * interval does, then added. */
bool grid_point(TimestampTz anchor, const Period &period, Wide k, TimestampTz &out)
{
    Wide const months = static_cast<Wide>(period.months) * k;
    Wide const days = static_cast<Wide>(period.days) * k;
    Wide const usec = static_cast<Wide>(period.usec) * k;
    if (months > std::numeric_limits<int32>::max() || months < std::numeric_limits<int32>::min() ||
        days > std::numeric_limits<int32>::max() || days < std::numeric_limits<int32>::min() ||
        usec > std::numeric_limits<int64>::max() || usec < std::numeric_limits<int64>::min())
        return false;
    return add_interval(anchor, Period{static_cast<int32>(months), static_cast<int32>(days), static_cast<int64>(usec)},
                        out);
}

} // namespace

bool add_interval(TimestampTz at, const Period &period, TimestampTz &out)
{
    if (!valid_timestamp(at))
        return false;
    TimestampTz result = at;
    if (period.months != 0 && !add_months(result, period.months))
        return false;
    if (period.days != 0 && !add_days(result, period.days))
        return false;
    Wide const sum = static_cast<Wide>(result) + period.usec;
    if (!valid_timestamp(sum))
        return false;
    out = static_cast<TimestampTz>(sum);
    return true;
}

bool window_at(TimestampTz anchor, const Period &period, TimestampTz at, Window &window)
{
    /* The period's approximate length: positive, and far beyond int64 for the longest intervals. */
    Wide const approx = static_cast<Wide>(period.months) * kMicrosPerMonth +
                        static_cast<Wide>(period.days) * kMicrosPerDay + period.usec;
    if (approx <= 0)
        return false;
    Wide k = floor_div(static_cast<Wide>(at) - anchor, approx);

    /*
     * Months vary in length, so the estimate may be a step or two off (the
     * Gregorian calendar keeps the error within days): walk to the window
     * that contains `at`.  With k > 0 a grid point that does not exist is
     * past the end of the timestamp range, so step back; with k < 0 it is
     * before its start, and so is the window.
     */
    TimestampTz start = 0;
    for (int steps = 0;; steps++) {
        if (steps > kMaxSteps)
            return false;
        bool const exists = grid_point(anchor, period, k, start);
        if (!exists && k < 0)
            return false;
        if (exists && start <= at)
            break;
        k--;
    }
    for (int steps = 0;; steps++) {
        TimestampTz next = 0;
        if (steps > kMaxSteps || !grid_point(anchor, period, k + 1, next))
            return false; /* the window's end is past the timestamp range */
        if (next > at) {
            window.start = start;
            window.end = next;
            return true;
        }
        k++;
        start = next;
    }
}

} // namespace quota
