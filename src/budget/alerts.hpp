/*
 * alerts.hpp — alerts, once per window (README, "History, retention and
 * alerts").
 *
 * An account's thresholds (percent of credit_limit, from set_alerts() or
 * else quota.default_alerts) are cached per backend, per account, until
 * set_alerts() or any change to quota.alert_settings invalidates them
 * (its trigger sends a relcache invalidation every backend receives), so
 * a call that crosses none runs no SQL for alerts.
 *
 * A threshold t is crossed by the call that takes used + held from below
 * ceil(credit_limit * t / 100) to at least that: the ledger knows both
 * sides exactly, as it holds the whole account.  Slotted calls never cross
 * one: the ledger deals the slots' shares out of the credits below the
 * next threshold only (deal_limit), so the call that would cross it finds
 * no slot able to serve it and takes the whole account.  The event row is
 * inserted with ON CONFLICT DO NOTHING on (team, resource, window_start,
 * threshold) and notified in the caller's transaction.
 */
#pragma once

#include "storage/store.hpp"

namespace quota::alerts {

/* Credits at which `percent` of `limit` is reached: ceil(limit * percent / 100). */
int64 credits_at(int64 limit, int32 percent);

/*
 * The limit to deal slot shares from: credit_limit, or one less than the
 * credits of the lowest threshold above `taken` (used + held), so that
 * slots stop short of it.
 */
int64 deal_limit(storage::AccountKey key, const Account &sum);

/*
 * After a spending call took the account from `before` to `after` (used +
 * held, whole account): raise an event for each threshold crossed.
 */
void raise_crossed(storage::AccountKey key, const Account &after, int64 before, TimestampTz now);

/* Forget every cached threshold. */
void forget_all();

/*
 * set_alerts(), in its own backend: these are the account's thresholds now
 * (its write is not visible to a read in the same command).  The other
 * backends forget theirs when it commits (the table's trigger).
 */
void remember(storage::AccountKey key, const std::vector<int32> &thresholds);

/* A relcache invalidation (callback registered by _PG_init): forget them if it is quota.alert_settings'. */
void relcache_changed(Oid relation);

/* Parse "80,100" (quota.default_alerts); false when malformed. */
bool parse_thresholds(const char *text, std::vector<int32> &out);

/* Check one threshold list (set_alerts): 22023 for values outside 1..1000, 22004 for NULL elements. */
void check_thresholds(const std::vector<int32> &thresholds, bool has_null);

inline constexpr int32 kMaxThreshold = 1000;
inline constexpr size_t kMaxThresholds = 64;

} // namespace quota::alerts
