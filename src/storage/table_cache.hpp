/*
 * table_cache.hpp — a per-backend cache of one small quota table, by
 * account: quota.links (budget/tree.cpp) and quota.alert_settings
 * (budget/alerts.cpp).
 *
 * Per backend, deliberately: account (cache_key(): team '\0' resource) →
 * what its row says.  Emptied by any relcache invalidation of the table
 * (changed(), from the callback _PG_init registers; the table's trigger
 * sends one every backend receives when a change commits), and when it
 * grows past kMaxCached.  After each emptying it reads again whether the
 * table has rows at all: while it has none (any() false), no account needs
 * a lookup.  `generation()` counts invalidations, so a caller can tell
 * whether one came in between two points.
 *
 * On Citus a change made on another node, or by hand through Citus, sends
 * this node no invalidation: there every refresh() empties the cache, and
 * every call reads its account's row again (one statement on the team's
 * shard).
 */
#pragma once

#include "bridge/guard.hpp"
#include "storage/store.hpp"

#include <string>
#include <unordered_map>
#include <utility>

namespace quota::storage {

template <typename Value>
class TableCache {
public:
    using Relid = Oid (*)();     /* the table's OID, InvalidOid while it does not exist (before 1.2) */
    using AnyRows = bool (*)();  /* whether the table has rows */

    TableCache(Relid relid, AnyRows any_rows) : relid_(relid), any_rows_(any_rows) {}

    /*
     * Take in pending invalidations; after one (or when full, or when the
     * table has appeared since it was last read: ALTER EXTENSION quota
     * UPDATE sends no invalidation for it) start again.
     */
    void refresh()
    {
        bridge::guarded([] { AcceptInvalidationMessages(); });
        if (distributed()) {
            map_.clear();
            stale_ = false;
            watched_ = relid_();
            any_ = true;
            return;
        }
        if (!stale_ && !OidIsValid(watched_) && OidIsValid(relid_()))
            stale_ = true;
        if (!stale_ && map_.size() < kMaxCached)
            return;
        map_.clear();
        stale_ = false;
        watched_ = relid_();
        any_ = any_rows_();
    }

    /* Whether the table had rows when last read (refresh() first). */
    bool any() const { return any_; }

    uint64 generation() const { return generation_; }

    /* The account's entry, read with `read(key, value)` on a miss (refresh() first). */
    template <typename Read>
    const Value &get(AccountKey key, const Read &read)
    {
        std::string name = cache_key(key);
        auto found = map_.find(name);
        if (found == map_.end()) {
            Value value;
            read(key, value);
            found = map_.emplace(std::move(name), std::move(value)).first;
        }
        return found->second;
    }

    /* This backend's own change, known before it commits (the invalidation reaches the others then). */
    void put(AccountKey key, Value value, bool has_rows)
    {
        any_ = any_ || has_rows;
        map_[cache_key(key)] = std::move(value);
    }

    void forget() { stale_ = true; }

    /* A relcache invalidation: forget everything if it is this table's (or every table's). */
    void changed(Oid relation)
    {
        if (relation == InvalidOid || relation == watched_) {
            stale_ = true;
            generation_++;
        }
    }

private:
    static constexpr size_t kMaxCached = 100000;

    std::unordered_map<std::string, Value> map_;
    bool stale_ = true;
    bool any_ = true;
    Oid watched_ = InvalidOid; /* the table, once read */
    uint64 generation_ = 0;
    Relid relid_;
    AnyRows any_rows_;
};

} // namespace quota::storage
