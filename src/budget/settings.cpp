/*
 * settings.cpp — the extension's settings, read by the budget logic and
 * registered when the library loads (_PG_init in entry/functions.cpp).
 * Values are checked when they are set, so a bad one is refused by SET and
 * never reaches a spending call.
 */
#include "budget/settings.hpp"

#include "budget/alerts.hpp"

#include <cerrno>
#include <cstdlib>

namespace quota::settings {

namespace {

char *default_limit_text = nullptr;
char *default_period_text = nullptr;
char *default_alerts_text = nullptr;

/* quota.default_alerts as assigned (plain data: assign hooks must not fail), and as handed out. */
int32 alerts_assigned[alerts::kMaxThresholds];
size_t alerts_assigned_count = 0;
uint64 alerts_assigned_version = 1;
std::vector<int32> alerts_value;
uint64 alerts_value_version = 0;

bool limit_set = false;
int auto_slots_value = kDefaultAutoSlots;
bool notify_value = true;
int purge_pause_value = 50;
int reply_lag_value = kDefaultReplyLagMs;
int64 limit_value = 0;
bool period_set = false;
Period period_value;

bool is_unset(const char *text)
{
    return text == nullptr || text[0] == '\0';
}

bool parse_limit(const char *text, int64 &limit)
{
    errno = 0;
    char *end = nullptr;
    long long const value = std::strtoll(text, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (errno != 0 || end == text || *end != '\0' || value < 0)
        return false;
    limit = value;
    return true;
}

/* interval_in without its ereport: the pieces PostgreSQL's parser returns error codes from. */
bool parse_period(const char *text, Period &period)
{
    char workbuf[256];
    char *fields[MAXDATEFIELDS];
    int types[MAXDATEFIELDS];
    int count = 0;
    int dtype = 0;
    struct pg_itm_in itm;
    Interval value;

    int status = ParseDateTime(text, workbuf, sizeof(workbuf), fields, types, MAXDATEFIELDS, &count);
    if (status == 0)
        status = DecodeInterval(fields, types, count, INTERVAL_FULL_RANGE, &dtype, &itm);
    if (status == DTERR_BAD_FORMAT)
        status = DecodeISO8601Interval(const_cast<char *>(text), &dtype, &itm);
    if (status != 0 || dtype != DTK_DELTA || itmin2interval(&itm, &value) != 0)
        return false;
    if (value.month < 0 || value.day < 0 || value.time < 0 || (value.month == 0 && value.day == 0 && value.time == 0))
        return false;
    period = Period{value.month, value.day, value.time};
    return true;
}

/* A period whose first window, started now, ends within the timestamp range. */
bool period_in_range(const Period &period)
{
    TimestampTz end = 0;
    return add_interval(GetCurrentTimestamp(), period, end);
}

bool check_limit(char **newval, void **, GucSource)
{
    int64 limit = 0;
    if (is_unset(*newval) || parse_limit(*newval, limit))
        return true;
    GUC_check_errdetail("quota.default_limit must be a non-negative bigint, or empty for unset.");
    return false;
}

void assign_limit(const char *newval, void *)
{
    limit_set = !is_unset(newval) && parse_limit(newval, limit_value);
}

bool check_period(char **newval, void **, GucSource)
{
    Period period;
    if (is_unset(*newval))
        return true;
    if (!parse_period(*newval, period)) {
        GUC_check_errdetail("quota.default_period must be a positive interval, or empty for never.");
        return false;
    }
    if (!period_in_range(period)) {
        GUC_check_errdetail("A window of quota.default_period started now would end past the timestamp range.");
        return false;
    }
    return true;
}

void assign_period(const char *newval, void *)
{
    period_set = !is_unset(newval) && parse_period(newval, period_value);
}

bool parse_alerts(const char *text, std::vector<int32> &out)
{
    try {
        return alerts::parse_thresholds(text, out);
    } catch (...) {
        return false;
    }
}

bool valid_alerts(const char *text)
{
    std::vector<int32> thresholds;
    return parse_alerts(text, thresholds);
}

/* Owns no C++ object: GUC_check_errdetail may raise an error. */
bool check_alerts(char **newval, void **, GucSource)
{
    if (is_unset(*newval) || valid_alerts(*newval))
        return true;
    GUC_check_errdetail("quota.default_alerts must list percentages of credit_limit from 1 to %d, e.g. '80,100', "
                        "or be empty for none.",
                        alerts::kMaxThreshold);
    return false;
}

void assign_alerts(const char *newval, void *)
{
    std::vector<int32> thresholds;
    alerts_assigned_count = 0;
    if (!is_unset(newval) && parse_alerts(newval, thresholds))
        for (int32 percent : thresholds)
            alerts_assigned[alerts_assigned_count++] = percent;
    alerts_assigned_version++;
}

bool shard_access_value = true;

} // namespace

void define()
{
    DefineCustomStringVariable("quota.default_limit", "Credit limit of accounts created on first use.",
                               "Unset (empty): spending on an unknown account raises an error.",
                               &default_limit_text, "", PGC_SUSET, 0, check_limit, assign_limit, nullptr);
    DefineCustomStringVariable("quota.default_period", "Period of accounts created on first use.",
                               "Unset (empty): such accounts never reset.", &default_period_text, "", PGC_SUSET, 0,
                               check_period, assign_period, nullptr);
    DefineCustomIntVariable("quota.auto_slots", "The most slots automatic slotting gives a contended account.",
                            "0 turns automatic slotting off; quota.set_slots() pins an account's count either way.",
                            &auto_slots_value, kDefaultAutoSlots, 0, kMaxSlots, PGC_SUSET, 0, nullptr, nullptr,
                            nullptr);
    DefineCustomIntVariable("quota.reply_lag",
                            "How old the other slots a slotted account's reply adds may be.",
                            "0 reads them for every reply.  Decisions never use them: only what a reply reports.",
                            &reply_lag_value, kDefaultReplyLagMs, 0, 60000, PGC_USERSET, GUC_UNIT_MS, nullptr,
                            nullptr, nullptr);
    DefineCustomStringVariable("quota.default_alerts", "Alert thresholds of accounts that have none of their own.",
                               "Percentages of credit_limit, e.g. '80,100'; unset (empty): none.",
                               &default_alerts_text, "", PGC_SUSET, 0, check_alerts, assign_alerts, nullptr);
    DefineCustomBoolVariable("quota.notify_events", "Send each alert event with NOTIFY on channel quota_events.",
                             "Off: events are only stored in quota.events (a transaction that ran NOTIFY cannot "
                             "PREPARE TRANSACTION).",
                             &notify_value, true, PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomBoolVariable("quota.citus_shard_access",
                             "On Citus, a call sent to its team's worker works on the team's shards themselves.",
                             "Off: its statements go through Citus's planner to the shards, as before 1.2's "
                             "shard access (the caller's value is sent with the call).",
                             &shard_access_value, true, PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("quota.purge_pause", "Pause of quota.purge_holds() after each batch of deleted holds.",
                            "Lets spending calls go on at nearly full speed while a large purge runs; 0: no pause.",
                            &purge_pause_value, 50, 0, 10000, PGC_USERSET, GUC_UNIT_MS, nullptr, nullptr, nullptr);
    MarkGUCPrefixReserved("quota");
}

int32 reply_lag_ms()
{
    return reply_lag_value;
}

int32 auto_slots()
{
    return auto_slots_value;
}

bool notify_events()
{
    return notify_value;
}

const std::vector<int32> &default_alerts()
{
    if (alerts_value_version != alerts_assigned_version) {
        alerts_value.assign(alerts_assigned, alerts_assigned + alerts_assigned_count);
        alerts_value_version = alerts_assigned_version;
    }
    return alerts_value;
}

bool default_limit(int64 &limit)
{
    limit = limit_value;
    return limit_set;
}

bool default_period(Period &period)
{
    period = period_value;
    return period_set;
}

} // namespace quota::settings
