/*
 * columns.hpp — how an Account maps to the columns of quota.accounts, for
 * both storage paths (SQL statements in store.cpp, direct access in
 * direct.cpp).  Internal to src/storage/.
 */
#pragma once

#include "budget/account.hpp"

#include <cstring>

namespace quota::storage {

/*
 * The account columns, in the order of ACCOUNT_COLUMNS (store.cpp) and of
 * kAccounts from kAccountFirstColumn (schema.hpp).  The last, slots, came
 * with version 1.1: a database still at 1.0 (the library is updated before
 * ALTER EXTENSION UPDATE runs) has no such column, and every account there
 * has no slots.
 */
inline constexpr int kAccountColumns = 10;
inline constexpr int kAccountColumns_1_0 = 9;

/* Build an Account from its columns; get(i, &isnull) returns account column i (credit_limit is 0). */
template <typename Get>
Account decode_account(Get get)
{
    Account account;
    bool isnull = false;
    account.credit_limit = DatumGetInt64(get(0, &isnull));
    account.unlimited = DatumGetBool(get(1, &isnull));
    Datum const period = get(2, &isnull);
    account.has_period = !isnull;
    if (account.has_period) {
        Interval const *value = DatumGetIntervalP(period);
        account.period = Period{value->month, value->day, value->time};
    }
    account.anchor = DatumGetTimestampTz(get(3, &isnull));
    account.window_start = DatumGetTimestampTz(get(4, &isnull));
    Datum const resets_at = get(5, &isnull);
    account.resets_at = isnull ? 0 : DatumGetTimestampTz(resets_at);
    account.used = DatumGetInt64(get(6, &isnull));
    account.held = DatumGetInt64(get(7, &isnull));
    Datum const next_expiry = get(8, &isnull);
    account.has_next_expiry = !isnull;
    account.next_expiry = isnull ? 0 : DatumGetTimestampTz(next_expiry);
    Datum const slots = get(9, &isnull);
    account.slots = isnull ? 0 : DatumGetInt32(slots);
    return account;
}

/* The account's columns as statement parameters; allocates, so call it inside guarded(). */
inline void encode_account(const Account &account, Datum *values, char *nulls)
{
    std::memset(nulls, ' ', kAccountColumns);
    values[0] = Int64GetDatum(account.credit_limit);
    values[1] = BoolGetDatum(account.unlimited);
    if (account.has_period) {
        auto *period = static_cast<Interval *>(palloc(sizeof(Interval)));
        period->month = account.period.months;
        period->day = account.period.days;
        period->time = account.period.usec;
        values[2] = IntervalPGetDatum(period);
    } else {
        values[2] = (Datum) 0;
        nulls[2] = 'n';
    }
    values[3] = TimestampTzGetDatum(account.anchor);
    values[4] = TimestampTzGetDatum(account.window_start);
    values[5] = TimestampTzGetDatum(account.resets_at);
    if (!account.has_period)
        nulls[5] = 'n';
    values[6] = Int64GetDatum(account.used);
    values[7] = Int64GetDatum(account.held);
    values[8] = TimestampTzGetDatum(account.next_expiry);
    if (!account.has_next_expiry)
        nulls[8] = 'n';
    values[9] = Int32GetDatum(account.slots);
}

} // namespace quota::storage
