/*
 * alerts.cpp — alerts, once per window (see alerts.hpp).
 */
#include "budget/alerts.hpp"

#include "bridge/error.hpp"
#include "bridge/guard.hpp"
#include "budget/settings.hpp"
#include "storage/table_cache.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace quota::alerts {

namespace {

/* An account's own thresholds (own false: none, so quota.default_alerts applies). */
struct Cached {
    bool own = false;
    std::vector<int32> thresholds;
};

/*
 * quota.alert_settings, per backend (storage/table_cache.hpp).  Refreshed
 * with the account row locked: invalidations sent by set_alerts() calls
 * that committed before this call got the row are taken in first (a
 * backend takes them in at transaction start and when it first takes a
 * lock, both of which may have come before that commit), and the rows are
 * read under the latest snapshot.
 */
storage::TableCache<Cached> cache(storage::alert_settings_relid, storage::any_thresholds);

/*
 * The account's thresholds, ascending: its own, else quota.default_alerts;
 * empty: none.  A copy: the cache may be emptied while the caller runs SQL.
 */
std::vector<int32> thresholds_of(storage::AccountKey key)
{
    cache.refresh();
    if (!cache.any())
        return settings::default_alerts();
    Cached const &entry = cache.get(key, [](storage::AccountKey at, Cached &read) {
        read.own = storage::read_thresholds(at, read.thresholds);
        std::sort(read.thresholds.begin(), read.thresholds.end());
    });
    if (entry.own && !entry.thresholds.empty())
        return entry.thresholds;
    return settings::default_alerts();
}

int64 taken_of(const Account &sum)
{
    int64 taken = 0;
    if (__builtin_add_overflow(sum.used, sum.held, &taken))
        return PG_INT64_MAX;
    return taken;
}

} // namespace

int64 credits_at(int64 limit, int32 percent)
{
    __int128 const product = static_cast<__int128>(limit) * percent;
    __int128 const credits = (product + 99) / 100;
    return credits > PG_INT64_MAX ? PG_INT64_MAX : static_cast<int64>(credits);
}

int64 deal_limit(storage::AccountKey key, const Account &sum)
{
    if (sum.unlimited || !storage::alerts_installed())
        return sum.credit_limit;
    int64 const taken = taken_of(sum);
    for (int32 percent : thresholds_of(key)) {
        int64 const at = credits_at(sum.credit_limit, percent);
        if (at > taken) /* the lowest one not reached: slots stop one credit short of it */
            return std::min(sum.credit_limit, at - 1);
    }
    return sum.credit_limit;
}

void raise_crossed(storage::AccountKey key, const Account &after, int64 before, TimestampTz now)
{
    if (after.unlimited || after.credit_limit <= 0)
        return;
    int64 const taken = taken_of(after);
    if (taken <= before)
        return;
    /*
     * Thresholds are whole percentages: unless the call took used + held
     * past the credits of the lowest percentage above `before`, it crossed
     * none, whatever the account's thresholds — no lookup at all.
     */
    __int128 const lowest = static_cast<__int128>(std::max<int64>(before, 0)) * 100 / after.credit_limit + 1;
    if (lowest > kMaxThreshold || credits_at(after.credit_limit, static_cast<int32>(lowest)) > taken)
        return;
    if (!storage::alerts_installed())
        return;
    for (int32 percent : thresholds_of(key)) {
        int64 const at = credits_at(after.credit_limit, percent);
        if (at <= 0 || at <= before || at > taken)
            continue;
        storage::Event event;
        event.window_start = after.window_start;
        event.has_resets_at = after.has_period;
        event.resets_at = after.resets_at;
        event.threshold = percent;
        event.used = after.used;
        event.held = after.held;
        event.credit_limit = after.credit_limit;
        event.created_at = now;
        storage::insert_event(key, event, settings::notify_events());
    }
}

void forget_all()
{
    cache.forget();
}

void remember(storage::AccountKey key, const std::vector<int32> &thresholds)
{
    cache.refresh();
    Cached entry;
    entry.own = !thresholds.empty();
    entry.thresholds = thresholds;
    std::sort(entry.thresholds.begin(), entry.thresholds.end());
    cache.put(key, std::move(entry), !thresholds.empty());
}

void relcache_changed(Oid relation)
{
    cache.changed(relation);
}

bool parse_thresholds(const char *text, std::vector<int32> &out)
{
    out.clear();
    const char *p = text;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t')
            p++;
        errno = 0;
        char *end = nullptr;
        long const value = std::strtol(p, &end, 10);
        if (end == p || errno != 0 || value < 1 || value > kMaxThreshold)
            return false;
        p = end;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == ',')
            p++;
        else if (*p != '\0')
            return false;
        if (std::find(out.begin(), out.end(), static_cast<int32>(value)) == out.end())
            out.push_back(static_cast<int32>(value));
        if (out.size() > kMaxThresholds)
            return false;
    }
    std::sort(out.begin(), out.end());
    return true;
}

void check_thresholds(const std::vector<int32> &thresholds, bool has_null)
{
    if (has_null)
        throw Error(ERRCODE_NULL_VALUE_NOT_ALLOWED, "alert thresholds must not contain null",
                    "Pass percentages of credit_limit, e.g. '{80,100}'.");
    if (thresholds.size() > kMaxThresholds)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, format("too many alert thresholds (%zu)", thresholds.size()),
                    format("An account has at most %zu alert thresholds.", kMaxThresholds));
    auto const bad = std::find_if(thresholds.begin(), thresholds.end(),
                                  [](int32 percent) { return percent < 1 || percent > kMaxThreshold; });
    if (bad != thresholds.end())
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, format("invalid alert threshold %d", *bad),
                    format("A threshold is a percentage of credit_limit from 1 to %d.", kMaxThreshold));
}

} // namespace quota::alerts
