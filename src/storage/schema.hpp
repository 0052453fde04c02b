/*
 * schema.hpp — the extension's tables as installed (sql/quota--*.sql), as
 * the direct path expects them (see table.hpp).  Internal to src/storage/.
 */
#pragma once

#include "storage/table.hpp"

namespace quota::storage {

/* quota.accounts: key (team, resource), then the Account columns of columns.hpp in order. */
inline const TableSpec kAccounts = {
    "accounts",
    12,
    {{"team", TEXTOID, false},
     {"resource", TEXTOID, false},
     {"credit_limit", INT8OID, false},
     {"unlimited", BOOLOID, false},
     {"period", INTERVALOID, true},
     {"anchor", TIMESTAMPTZOID, false},
     {"window_start", TIMESTAMPTZOID, false},
     {"resets_at", TIMESTAMPTZOID, true},
     {"used", INT8OID, false},
     {"held", INT8OID, false},
     {"next_expiry", TIMESTAMPTZOID, true},
     {"slots", INT4OID, false, true}},
    2,
    {TEXT_BTREE_FAM_OID, TEXT_BTREE_FAM_OID}};

/* Where the Account columns start in kAccounts. */
inline constexpr int kAccountFirstColumn = 2;

/* quota.slots (1.1): key (team, resource, slot). */
inline const TableSpec kSlots = {
    "slots",
    9,
    {{"team", TEXTOID, false},
     {"resource", TEXTOID, false},
     {"slot", INT4OID, false},
     {"window_start", TIMESTAMPTZOID, false},
     {"resets_at", TIMESTAMPTZOID, true},
     {"used", INT8OID, false},
     {"held", INT8OID, false},
     {"share", INT8OID, true},
     {"next_expiry", TIMESTAMPTZOID, true}},
    3,
    {TEXT_BTREE_FAM_OID, TEXT_BTREE_FAM_OID, INTEGER_BTREE_FAM_OID}};

/* Where the Slot columns (from window_start) start in kSlots. */
inline constexpr int kSlotFirstColumn = 3;

/* quota.alert_settings (1.2): read directly (an account's thresholds, on a cache miss), written through SQL only. */
inline const TableSpec kAlertSettings = {"alert_settings",
                                         3,
                                         {{"team", TEXTOID, false},
                                          {"resource", TEXTOID, false},
                                          {"thresholds", INT4ARRAYOID, false}},
                                         2,
                                         {TEXT_BTREE_FAM_OID, TEXT_BTREE_FAM_OID},
                                         true};

/* quota.links (1.2): read directly (an account's parent and cap, on a cache miss), written through SQL only. */
inline const TableSpec kLinks = {"links",
                                 4,
                                 {{"team", TEXTOID, false},
                                  {"resource", TEXTOID, false},
                                  {"parent", TEXTOID, true},
                                  {"max_open_holds", INT4OID, true}},
                                 2,
                                 {TEXT_BTREE_FAM_OID, TEXT_BTREE_FAM_OID},
                                 true};

/* quota.holds: written through SQL only; locked up front by writing calls. */
inline const TableSpec kHolds = {"holds", 0, {}, 0, {}};

} // namespace quota::storage
