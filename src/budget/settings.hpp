/*
 * settings.hpp — the extension's settings (GUCs), defined when the
 * library loads.
 *
 *   quota.default_limit   non-negative bigint, unset by default: spending
 *                         calls create unknown accounts with this limit
 *   quota.default_period  interval, unset by default (never resets)
 *
 * Both are superuser-set (PGC_SUSET; grantable with GRANT SET ON
 * PARAMETER), so a role that may spend credits cannot give itself a
 * budget by setting them.
 */
#pragma once

#include "budget/account.hpp"

namespace quota::settings {

void define();

/* The default limit, when set. */
bool default_limit(int64 &limit);

/* The default period, when set. */
bool default_period(Period &period);

} // namespace quota::settings
