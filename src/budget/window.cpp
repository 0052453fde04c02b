/*
 * window.cpp — budget periods on the grid anchor + k·period, in UTC.
 *
 * A timestamptz is microseconds since 2000-01-01 00:00 UTC; read as a
 * timestamp without time zone it is the UTC wall clock, so PostgreSQL's
 * timestamp + interval gives month arithmetic in UTC whatever the
 * session's TimeZone.  Window k always starts at anchor + k·period,
 * computed from the anchor, so monthly windows never drift from a 31st.
 */
#include "budget/account.hpp"

#include "bridge/error.hpp"
#include "bridge/guard.hpp"

#include <limits>

namespace quota {

namespace {

constexpr int64 kMicrosPerDay = INT64CONST(86400000000);
/* A Gregorian month on average: 365.2425 / 12 days. */
constexpr int64 kMicrosPerMonth = INT64CONST(2629746000000);

[[noreturn]] void out_of_range()
{
    throw Error(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE, "budget window out of range",
                "The anchor and period put the current window outside the timestamp range.");
}

int64 floor_div(int64 a, int64 b)
{
    int64 q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

/* anchor + k·period, k·period computed field by field as PostgreSQL's integer * interval does */
TimestampTz grid_point(TimestampTz anchor, const Period &period, int64 k)
{
    __int128 const months = static_cast<__int128>(period.months) * k;
    __int128 const days = static_cast<__int128>(period.days) * k;
    __int128 const usec = static_cast<__int128>(period.usec) * k;
    if (months > std::numeric_limits<int32>::max() || months < std::numeric_limits<int32>::min() ||
        days > std::numeric_limits<int32>::max() || days < std::numeric_limits<int32>::min() ||
        usec > std::numeric_limits<int64>::max() || usec < std::numeric_limits<int64>::min())
        out_of_range();

    return add_interval(anchor, Period{static_cast<int32>(months), static_cast<int32>(days), static_cast<int64>(usec)});
}

} // namespace

TimestampTz add_interval(TimestampTz at, const Period &period)
{
    if (period.months == 0 && period.days == 0) {
        int64 result = 0;
        if (__builtin_add_overflow(at, period.usec, &result) || !IS_VALID_TIMESTAMP(result))
            out_of_range();
        return result;
    }
    Interval span;
    span.month = period.months;
    span.day = period.days;
    span.time = period.usec;
    /* The TimestampTz read as a UTC Timestamp: PostgreSQL's own month and day arithmetic. */
    return bridge::guarded_value([&] {
        return DatumGetTimestamp(
            DirectFunctionCall2(timestamp_pl_interval, TimestampGetDatum(at), PointerGetDatum(&span)));
    });
}

Window window_at(TimestampTz anchor, const Period &period, TimestampTz at)
{
    int64 const approx = static_cast<int64>(period.months) * kMicrosPerMonth +
                         static_cast<int64>(period.days) * kMicrosPerDay + period.usec;
    int64 k = floor_div(at - anchor, approx);

    Window window;
    window.start = grid_point(anchor, period, k);
    if (period.months == 0 && period.days == 0) {
        window.end = grid_point(anchor, period, k + 1);
        return window;
    }
    /* Months vary in length: step from the estimate to the exact window. */
    while (window.start > at) {
        k--;
        window.start = grid_point(anchor, period, k);
    }
    for (;;) {
        TimestampTz const next = grid_point(anchor, period, k + 1);
        if (next > at) {
            window.end = next;
            return window;
        }
        k++;
        window.start = next;
    }
}

} // namespace quota
