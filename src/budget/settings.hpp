/*
 * settings.hpp — the extension's settings (GUCs), defined when the
 * library loads.
 *
 *   quota.default_limit   non-negative bigint, unset by default: spending
 *                         calls create unknown accounts with this limit
 *   quota.default_period  interval, unset by default (never resets)
 *   quota.auto_slots      integer 0..256, default 64: the most slots
 *                         automatic slotting gives a contended account
 *                         (0: off; set_slots() pins an account's count)
 *   quota.reply_lag       integer ms, default 20: a granted call on a
 *                         slotted account reports the other slots as this
 *                         backend read them at most this long ago (0: reads
 *                         them every call)
 *
 *   quota.default_alerts  thresholds (percent of credit_limit, e.g. '80,100')
 *                         of accounts without their own (set_alerts)
 *   quota.purge_pause     integer ms, default 50: purge_holds() pauses this
 *                         long after each batch it deleted (read by the SQL
 *                         function; defined here so that it is checked)
 *   quota.notify_events   boolean, default on: alerts are also sent with
 *                         NOTIFY (off for two-phase commit, which refuses
 *                         a transaction that ran NOTIFY)
 *   quota.citus_shard_access  boolean, default on: on Citus, a call sent
 *                         to its team's worker works on the team's shards
 *                         themselves (storage/delegate.cpp reads it)
 *
 * All but reply_lag are superuser-set (PGC_SUSET; grantable with GRANT SET ON
 * PARAMETER), so a role that may spend credits cannot give itself a
 * budget by setting them.
 */
#pragma once

#include "budget/account.hpp"

#include <vector>

namespace quota::settings {

void define();

inline constexpr int kDefaultAutoSlots = 64;
inline constexpr int kDefaultReplyLagMs = 20;

/* How old (ms) the other slots in a slotted call's reply may be (0: read every time). */
int32 reply_lag_ms();

/* The most slots automatic slotting may give an account (0: none). */
int32 auto_slots();

/* quota.notify_events: alerts are also sent with NOTIFY (default on). */
bool notify_events();

/* quota.default_alerts, ascending (empty: none). */
const std::vector<int32> &default_alerts();

/* The default limit, when set. */
bool default_limit(int64 &limit);

/* The default period, when set. */
bool default_period(Period &period);

} // namespace quota::settings
