/*
 * delegate.cpp — a spending call sent to the worker that holds its team on
 * a distributed quota (delegate.hpp): the twins' calls, their replies, and
 * what a twin keeps while it runs.
 */
#include "storage/delegate.hpp"

#include "bridge/guard.hpp"
#include "storage/sql.hpp"
#include "storage/table.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <string>
#include <unordered_map>
#include <vector>

namespace quota::storage {

namespace {

/*
 * The settings a call on the shard reads, sent with it: the twin runs with
 * the caller's values, not the worker's: quota's defaults, the TimeZone its
 * alert payloads are written in, how long it may wait for a lock, and
 * whether it works on the shards themselves (quota.notify_events is the
 * caller's own: it notifies).
 */
constexpr const char *kSentSettings[] = {"quota.default_limit", "quota.default_period", "quota.default_alerts",
                                         "TimeZone", "lock_timeout", "quota.citus_shard_access"};
constexpr int kSentCount = sizeof(kSentSettings) / sizeof(kSentSettings[0]);

#define REPLY_COLUMNS \
    "r.granted, r.reservation, r.used, r.held, r.credit_limit, r.remaining, r.resets_at, r.retry_after, r.notices"

/* Citus delegates a call only in this form: one function in FROM, its arguments constants (a plan per run). */
Statement charge_sql = {
    "SELECT " REPLY_COLUMNS " FROM quota_internal.charge_credit_on_shard($1, $2, $3, $4, $5, $6) r", nullptr, 6,
    {TEXTOID, INT8OID, TEXTOID, BOOLOID, INT8OID, TEXTARRAYOID}};
Statement reserve_sql = {
    "SELECT " REPLY_COLUMNS " FROM quota_internal.reserve_credit_on_shard($1, $2, $3, $4, $5, $6, $7) r", nullptr, 7,
    {TEXTOID, INT8OID, TEXTOID, INT8OID, TEXTOID, INT8OID, TEXTARRAYOID}};
Statement commit_sql = {
    "SELECT " REPLY_COLUMNS " FROM quota_internal.commit_credit_on_shard($1, $2, $3, $4, $5) r", nullptr, 5,
    {TEXTOID, INT8OID, INT8OID, INT8OID, TEXTARRAYOID}};
Statement release_sql = {"SELECT r FROM quota_internal.release_credit_on_shard($1, $2, $3, $4) r", nullptr, 4,
                         {TEXTOID, INT8OID, INT8OID, TEXTARRAYOID}};

/*
 * A reservation's team.  Its id carries the Citus group of the node that
 * made it (quota._cluster_id): first that node is asked, through
 * quota_internal.hold_team_on_node, which Citus delegates by `route`, a
 * value whose shard of quota.accounts is on that node (found here from
 * Citus's metadata, no hop; none found among the values tried: every shard
 * is asked); it reads its own shards of quota.holds.  Not there (no
 * shard on that node, or the hold's shard moved since): every shard is
 * asked (Citus reads them over one connection per worker).  Made through
 * parents: not sent.
 */
Statement route_sql = local_statement({
    "WITH r AS MATERIALIZED ("
    " SELECT CAST(s.shardminvalue AS pg_catalog.int4) AS lo, CAST(s.shardmaxvalue AS pg_catalog.int4) AS hi"
    "  FROM pg_catalog.pg_dist_shard s"
    "  JOIN pg_catalog.pg_dist_placement p ON p.shardid OPERATOR(pg_catalog.=) s.shardid"
    " WHERE s.logicalrelid OPERATOR(pg_catalog.=) CAST('quota.accounts' AS pg_catalog.regclass)"
    "  AND p.groupid OPERATOR(pg_catalog.=) $1)"
    /*
     * Citus hashes a text team with hashtext (its worker_hash() gives the
     * same).  1,024 values against every shard on the node: a node with
     * 1/32 of the hash space misses once in 10^14; a node whose only shard
     * is one isolated tenant's has no route, and every shard is asked.
     */
    " SELECT CAST(k AS pg_catalog.text) FROM pg_catalog.generate_series(0, 1023) k"
    " WHERE EXISTS (SELECT FROM r WHERE pg_catalog.hashtext(CAST(k AS pg_catalog.text)) OPERATOR(pg_catalog.>=) r.lo"
    "  AND pg_catalog.hashtext(CAST(k AS pg_catalog.text)) OPERATOR(pg_catalog.<=) r.hi)"
    " LIMIT 1",
    nullptr, 1, {INT4OID}});
/* commit and release in one hop (the node that made the reservation settles it on its team's shards). */
Statement commit_on_node_sql = {
    "SELECT " REPLY_COLUMNS ", r.here FROM quota_internal.commit_credit_on_node($1, $2, $3, $4, $5) r", nullptr, 5,
    {TEXTOID, INT8OID, INT8OID, INT8OID, TEXTARRAYOID}};
Statement release_on_node_sql = {"SELECT r FROM quota_internal.release_credit_on_node($1, $2, $3, $4) r", nullptr, 4,
                                 {TEXTOID, INT8OID, INT8OID, TEXTARRAYOID}};
Statement hold_team_on_node_sql = {
    "SELECT r.team, r.through_parents FROM quota_internal.hold_team_on_node($1, $2) r", nullptr, 2, {TEXTOID, INT8OID}};
/* A reservation's team, and whether it was made through parents, from quota.<table> (holds, or one of its shards). */
#define HOLD_TEAM_FROM(table) \
    "SELECT CAST(h.team AS pg_catalog.text), h.origin IS NOT NULL FROM ONLY quota." table " h WHERE h.id" EQ "$1"
Statement hold_team_sql = {HOLD_TEAM_FROM("holds"), nullptr, 1, {INT8OID}};

/*
 * On the node a reservation's id names (quota_internal.hold_team_on_node):
 * one statement over this node's shards of quota.holds, made from Citus's
 * metadata (a shard moved here or away makes a new one) and kept while the
 * shards stay.
 */
Statement local_holds_sql = local_statement({
    "SELECT pg_catalog.string_agg(pg_catalog.format('" HOLD_TEAM_FROM("%I") "',"
    "  'holds_' OPERATOR(pg_catalog.||) s.shardid), ' UNION ALL '"
    "  ORDER BY s.shardid)"
    " FROM pg_catalog.pg_dist_shard s"
    " JOIN pg_catalog.pg_dist_placement p ON p.shardid OPERATOR(pg_catalog.=) s.shardid"
    " WHERE s.logicalrelid OPERATOR(pg_catalog.=) CAST('quota.holds' AS pg_catalog.regclass)"
    "  AND p.groupid OPERATOR(pg_catalog.=) (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)"
    "  AND pg_catalog.to_regclass(pg_catalog.format('quota.%I', 'holds_' OPERATOR(pg_catalog.||) s.shardid))"
    "   IS NOT NULL",
    nullptr, 0, {}});
/* That statement (its text in local_lookup_sql), prepared again when the node's shards change. */
std::string local_lookup_sql;
Statement local_lookup = local_statement({nullptr, nullptr, 1, {INT8OID}});

/*
 * Before a twin is sent: the team's shard's metadata lock (ShareLock, as
 * Citus takes for a write it routes itself), held to the end of the
 * transaction.  Citus treats a delegated call as a read and takes none, so
 * a shard move could finish between the choice of the worker and the call,
 * which then found its shard gone ("cannot execute a distributed query from
 * a query on a shard": found by test/citus.sh).  With it a move waits for
 * the calls under way, and a call for the move.
 */
Statement lock_shard_sql = local_statement({
    "SELECT pg_catalog.lock_shard_metadata(5, ARRAY[pg_catalog.get_shard_id_for_distribution_column("
    "CAST('quota.accounts' AS pg_catalog.regclass), CAST($1 AS pg_catalog.text))])",
    nullptr, 1, {TEXTOID}});
static_assert(ShareLock == 5, "lock_shard_metadata() takes PostgreSQL's lock mode numbers");

/*
 * A twin's team's shard of quota.accounts, and whether this node has a
 * placement of it (bind()).  The caller holds the shard's metadata lock
 * (lock_shard_sql) on the node that sent the twin, and a shard move takes
 * it there first, so the placement cannot change while the twin runs.
 */
Statement team_shard_sql = local_statement({
    "SELECT s.shard, EXISTS (SELECT FROM pg_catalog.pg_dist_placement p"
    "  WHERE p.shardid OPERATOR(pg_catalog.=) s.shard"
    "   AND p.groupid OPERATOR(pg_catalog.=) (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g))"
    " FROM (SELECT pg_catalog.get_shard_id_for_distribution_column(CAST('quota.accounts' AS pg_catalog.regclass),"
    "  $1) AS shard) s",
    nullptr, 1, {TEXTOID}});

/*
 * The shards co-located with it: of each of kShardTableNames, the one that
 * holds the team (NULL: that table is not distributed, as when some were
 * distributed by hand).  Fixed for a shard of quota.accounts (a split makes
 * new shards), so kept per backend (colocated).
 */
Statement colocated_sql = local_statement({
    "SELECT CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_dist_partition d"
    "   WHERE d.logicalrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.format('quota.%I', k.name)))"
    "  THEN pg_catalog.get_shard_id_for_distribution_column("
    "   pg_catalog.to_regclass(pg_catalog.format('quota.%I', k.name)), $1) END"
    " FROM pg_catalog.unnest(ARRAY['accounts', 'holds', 'slots', 'links', 'alert_settings', 'events', 'history',"
    "  'history_purged']) WITH ORDINALITY k(name, n)"
    " ORDER BY k.n",
    nullptr, 1, {TEXTOID}});
static_assert(kShardTables == 8, "colocated_sql lists kShardTableNames");

struct Colocated {
    int64 shard[kShardTables];
};
std::unordered_map<int64, Colocated> colocated;
constexpr size_t kMaxColocated = 65536;

/* The twin under way in this backend, if any. */
struct ShardCall {
    bool active = false;
    LocalTransactionId xact = InvalidLocalTransactionId;
    Datum team = (Datum) 0; /* in TopTransactionContext */
    TimestampTz now = 0;    /* the caller's transaction time */
    int guc_nest = 0;
    SubTransactionId subxact = InvalidSubTransactionId; /* the level the twin runs at */
    std::vector<std::string> payloads;
};
ShardCall shard_call;

/* The caller's transaction time, which a twin runs at (microseconds since 2000, as PostgreSQL keeps it). */
TimestampTz now()
{
    return GetCurrentTransactionStartTimestamp();
}

/* The caller's values of kSentSettings, as text[] ('' for unset). */
Datum sent_settings()
{
    return bridge::guarded_value([] {
        Datum values[kSentCount];
        for (int i = 0; i < kSentCount; i++) {
            const char *value = GetConfigOption(kSentSettings[i], true, false);
            values[i] = CStringGetTextDatum(value != nullptr ? value : "");
        }
        return PointerGetDatum(construct_array(values, kSentCount, TEXTOID, -1, false, TYPALIGN_INT));
    });
}

/* The twin's side: run with the caller's settings until leave_shard_call() (an error's abort restores them too). */
int apply_settings(Datum settings)
{
    return bridge::guarded_value([settings] {
        Datum *values = nullptr;
        bool *nulls = nullptr;
        int count = 0;
        deconstruct_array(DatumGetArrayTypeP(settings), TEXTOID, -1, false, TYPALIGN_INT, &values, &nulls, &count);
        int const nest = NewGUCNestLevel();
        for (int i = 0; i < count && i < kSentCount; i++)
            if (!nulls[i])
                (void) set_config_option(kSentSettings[i], TextDatumGetCString(values[i]), PGC_SUSET, PGC_S_SESSION,
                                         GUC_ACTION_SAVE, true, 0, false);
        return nest;
    });
}

/* NOTIFY here each payload a twin sent back (text[]), if this node's quota.notify_events says so. */
void notify(Datum payloads)
{
    bridge::guarded([payloads] {
        const char *setting = GetConfigOption("quota.notify_events", true, false);
        if (setting != nullptr && std::strcmp(setting, "on") != 0)
            return;
        Datum *values = nullptr;
        bool *nulls = nullptr;
        int count = 0;
        deconstruct_array(DatumGetArrayTypeP(payloads), TEXTOID, -1, false, TYPALIGN_INT, &values, &nulls, &count);
        for (int i = 0; i < count; i++)
            if (!nulls[i])
                Async_Notify("quota_events", TextDatumGetCString(values[i]));
    });
}

/* The reply row of a twin (REPLY_COLUMNS), as the caller's Grant; its alerts notified here. */
Grant decode_reply()
{
    Grant grant;
    bool isnull = false;
    grant.granted = DatumGetBool(column(1, &isnull));
    Datum value = column(2, &isnull);
    grant.has_reservation = !isnull;
    grant.reservation = isnull ? 0 : DatumGetInt64(value);
    grant.usage.used = DatumGetInt64(column(3, &isnull));
    grant.usage.held = DatumGetInt64(column(4, &isnull));
    value = column(5, &isnull);
    grant.usage.unlimited = isnull;
    grant.usage.credit_limit = isnull ? 0 : DatumGetInt64(value);
    value = column(6, &isnull);
    grant.usage.remaining = isnull ? 0 : DatumGetInt64(value);
    grant.has_chain_remaining = true; /* the reply's remaining as the twin gave it, NULL included */
    grant.chain_unlimited = isnull;
    grant.chain_remaining = grant.usage.remaining;
    value = column(7, &isnull);
    grant.usage.has_period = !isnull;
    grant.usage.resets_at = isnull ? 0 : DatumGetTimestampTz(value);
    value = column(8, &isnull);
    grant.has_retry_after = !isnull;
    grant.retry_after = isnull ? 0 : DatumGetInt32(value);
    value = column(9, &isnull);
    if (!isnull)
        notify(value);
    return grant;
}

/*
 * Run a twin.  Its error reaches the caller as the twin raised it: the
 * same SQLSTATE, message, detail and hint, raised again here (so escaped
 * for this client's encoding, and with this caller's own context, as on
 * one node), without the hop's context ("while executing command on
 * <worker>", the statement's text).  A connection or internal error is
 * passed on whole: its context says where it happened.
 */
void run_twin(Statement &statement, Datum *values, const char *nulls, bool lock_team = true)
{
    if (lock_team) {
        Datum team[1] = {values[0]};
        execute(lock_shard_sql, team, nullptr, false);
        /* A move that committed while this waited: Citus plans the call with its new placement. */
        bridge::guarded([] { AcceptInvalidationMessages(); });
    }
    ErrorData const *twin = nullptr;
    try {
        execute(statement, values, nulls, false);
    } catch (const PgError &e) {
        int const category = ERRCODE_TO_CATEGORY(e.data()->sqlerrcode);
        if (category == ERRCODE_CONNECTION_EXCEPTION || category == ERRCODE_TO_CATEGORY(ERRCODE_INTERNAL_ERROR))
            throw;
        twin = e.data();
    }
    if (twin != nullptr)
        throw Error(twin->sqlerrcode, twin->message != nullptr ? twin->message : "",
                    twin->detail != nullptr ? twin->detail : "", twin->hint != nullptr ? twin->hint : "");
}

Grant run_for_grant(Statement &statement, Datum *values, const char *nulls)
{
    connect();
    run_twin(statement, values, nulls);
    Grant const grant = decode_reply();
    finish();
    return grant;
}

/*
 * Routes by bucket: for each of the kBuckets ranges of Citus's hash of a
 * team (hashtext: hash_any of its bytes), the text of a number whose hash
 * is in that range, found once per backend ("" where none of the first
 * numbers tried falls in it).  A value of a bucket is in the shard of every
 * team of that bucket whenever the shard's range holds the whole bucket:
 * every shard does for a power-of-two shard count up to kBuckets; a bucket
 * split over shards (another count, a later split, an isolated tenant)
 * sends some commits by their team instead.
 */
constexpr int kRouteChars = 12;
char bucket_route[kBuckets][kRouteChars];
bool bucket_routes_made = false;

void make_bucket_routes()
{
    int left = kBuckets;
    constexpr int64 kTries = int64{64} * kBuckets;
    for (int64 k = 0; left > 0 && k < kTries; k++) {
        char text[kRouteChars];
        int const length = std::snprintf(text, sizeof(text), "%lld", static_cast<long long>(k));
        auto const hash = static_cast<int32>(hash_bytes(reinterpret_cast<const unsigned char *>(text), length));
        int const bucket = bucket_of_hash(hash);
        if (bucket_route[bucket][0] == '\0') {
            std::memcpy(bucket_route[bucket], text, static_cast<size_t>(length) + 1);
            left--;
        }
    }
    bucket_routes_made = true;
}

/* A value whose shard holds the reservation's team (when that shard holds its id's whole bucket). */
bool route_of_bucket(int64 reservation, Datum &route)
{
    if (!bucket_routes_made)
        make_bucket_routes();
    const char *text = bucket_route[id_bucket(reservation)];
    if (text[0] == '\0')
        return false;
    route = bridge::guarded_value([text] { return CStringGetTextDatum(text); });
    return true;
}

/* A value whose shard is on the node that made the reservation (its id's group), in the open SPI connection. */
bool route_to_maker(int64 reservation, Datum &route)
{
    Datum group[1] = {Int32GetDatum(id_group(reservation))};
    execute(route_sql, group, nullptr, true);
    if (SPI_processed != 1)
        return false;
    bool isnull = false;
    route = column(1, &isnull);
    return !isnull;
}

/* The caller's quota.citus_shard_access (sent with its calls). */
bool shard_access()
{
    const char *access = bridge::guarded_value([] { return GetConfigOption("quota.citus_shard_access", true, false); });
    return access == nullptr || std::strcmp(access, "on") == 0;
}

/* The team of a reservation, in the open SPI connection; false: not to be sent. */
bool hold_team(int64 reservation, Datum &team)
{
    bool isnull = false;
    bool found_on_node = false;
    Datum route = (Datum) 0;
    if (route_to_maker(reservation, route)) {
        Datum values[2] = {route, Int64GetDatum(reservation)};
        execute(hold_team_on_node_sql, values, nullptr, false);
        if (SPI_processed == 1) {
            (void) column(1, &isnull); /* a row of NULLs: not on that node */
            found_on_node = !isnull;
        }
    }
    if (!found_on_node) {
        Datum values[1] = {Int64GetDatum(reservation)};
        execute(hold_team_sql, values, nullptr, true);
        if (SPI_processed != 1)
            return false;
    }
    if (DatumGetBool(column(2, &isnull)))
        return false;
    team = column(1, &isnull);
    return true;
}

/* A twin's (sub)transaction aborted: its shards are no longer bound. */
void on_abort(XactEvent event, void *)
{
    if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT) {
        shard_call.active = false;
        bind_shards(nullptr);
    }
}

void on_sub_abort(SubXactEvent event, SubTransactionId aborted, SubTransactionId, void *)
{
    /* The twin's own level or one it runs in; not a subtransaction begun and rolled back inside the twin. */
    if (event == SUBXACT_EVENT_ABORT_SUB && aborted <= shard_call.subxact) {
        shard_call.active = false;
        bind_shards(nullptr);
    }
}

/*
 * Bind the team's shards (table.hpp) when every one of them is a relation
 * of this node with a placement here; otherwise leave quota's tables as
 * they are (statements that Citus plans and runs, as a call made on the
 * coordinator does).
 */
void bind(Datum team)
{
    static bool callbacks = false;
    if (!callbacks) {
        bridge::guarded([] {
            RegisterXactCallback(on_abort, nullptr);
            RegisterSubXactCallback(on_sub_abort, nullptr);
        });
        callbacks = true;
    }
    bridge::guarded([] { bind_shards(nullptr); }); /* until proven again */
    ShardBinding shards;
    bool proven = false;
    if (!shard_access())
        return; /* off: the statements go through Citus */
    connect();
    Datum values[1] = {team};
    execute(team_shard_sql, values, nullptr, false);
    bool isnull = false;
    bool here = false;
    int64 shard = 0;
    if (SPI_processed == 1) {
        Datum const id = column(1, &isnull);
        shard = isnull ? 0 : DatumGetInt64(id);
        here = !isnull && DatumGetBool(column(2, &isnull)) && !isnull;
    }
    auto found = here ? colocated.find(shard) : colocated.end();
    if (here && found == colocated.end()) {
        execute(colocated_sql, values, nullptr, false);
        Colocated ids{};
        bool complete = SPI_processed == kShardTables;
        for (uint64 i = 0; complete && i < SPI_processed; i++) {
            Datum const id = column_of(i, 1, &isnull);
            complete = !isnull;
            ids.shard[i] = complete ? DatumGetInt64(id) : 0;
        }
        if (complete && ids.shard[0] == shard) {
            if (colocated.size() >= kMaxColocated)
                colocated.clear();
            found = colocated.emplace(shard, ids).first;
        }
    }
    finish();
    if (found == colocated.end())
        return;
    /* The shards' relations here, by name (a shard moved away and back is a new relation). */
    std::copy(std::begin(found->second.shard), std::end(found->second.shard), std::begin(shards.shard));
    char names[kShardTables][NAMEDATALEN];
    for (int i = 0; i < kShardTables; i++)
        std::snprintf(names[i], NAMEDATALEN, "%s_%lld", kShardTableNames[i], static_cast<long long>(shards.shard[i]));
    proven = bridge::guarded_value([&] {
        Oid const schema = get_namespace_oid("quota", false);
        bool all = true;
        for (int i = 0; i < kShardTables; i++) {
            shards.relation[i] = get_relname_relid(names[i], schema);
            all = all && OidIsValid(shards.relation[i]);
        }
        return all;
    });
    if (!proven)
        colocated.erase(found); /* a table made again since: its shards are read again next time */
    bridge::guarded([&] { bind_shards(proven ? &shards : nullptr); });
}

} // namespace

bool delegates()
{
    shard_call.active = false;
    bridge::guarded([] { bind_shards(nullptr); });
    return distributed();
}

void enter_shard_call(Datum team, TimestampTz caller_now, Datum settings)
{
    shard_call.now = caller_now;
    shard_call.payloads.clear();
    shard_call.team = bridge::guarded_value([team] {
        MemoryContext const saved = MemoryContextSwitchTo(TopTransactionContext);
        Datum const copy = datumCopy(team, false, -1);
        MemoryContextSwitchTo(saved);
        return copy;
    });
    shard_call.guc_nest = settings != (Datum) 0 ? apply_settings(settings) : 0;
    shard_call.xact = MyProc->lxid;
    shard_call.subxact = bridge::guarded_value([] { return GetCurrentSubTransactionId(); });
    shard_call.active = true;
    bind(shard_call.team);
}

bool enter_route_call(Datum route, int64 reservation, TimestampTz caller_now, Datum settings)
{
    enter_shard_call(route, caller_now, settings);
    bool found = false;
    bool through_parents = false;
    if (bridge::guarded_value([] { return bound_shards(); }) != nullptr) {
        /* The route's shard of quota.holds: the hold is there when its team's shard is the route's. */
        connect();
        Datum values[1] = {Int64GetDatum(reservation)};
        execute(hold_team_sql, values, nullptr, false);
        found = SPI_processed == 1;
        if (found) {
            bool isnull = false;
            Datum const team = column(1, &isnull);
            through_parents = DatumGetBool(column(2, &isnull));
            shard_call.team = bridge::guarded_value([team] {
                MemoryContext const saved = MemoryContextSwitchTo(TopTransactionContext);
                Datum const copy = datumCopy(team, false, -1);
                MemoryContextSwitchTo(saved);
                return copy;
            });
        }
        finish();
    }
    if (found && !through_parents)
        return true;
    bool isnull = false;
    (void) leave_shard_call(&isnull);
    return false;
}

Datum leave_shard_call(bool *isnull)
{
    shard_call.active = false;
    bridge::guarded([] { bind_shards(nullptr); });
    int const nest = shard_call.guc_nest;
    if (nest != 0)
        bridge::guarded([nest] { AtEOXact_GUC(true, nest); });
    *isnull = shard_call.payloads.empty();
    if (*isnull)
        return (Datum) 0;
    size_t const count = shard_call.payloads.size();
    Datum const array = bridge::guarded_value([count] {
        std::vector<std::string> const &payloads = shard_call.payloads;
        auto *values = static_cast<Datum *>(palloc(count * sizeof(Datum)));
        for (size_t i = 0; i < count; i++)
            values[i] = PointerGetDatum(cstring_to_text_with_len(payloads[i].data(), static_cast<int>(payloads[i].size())));
        return PointerGetDatum(construct_array(values, static_cast<int>(count), TEXTOID, -1, false, TYPALIGN_INT));
    });
    shard_call.payloads.clear();
    return array;
}

bool in_shard_call()
{
    return shard_call.active && shard_call.xact == MyProc->lxid;
}

Datum shard_call_team()
{
    return shard_call.team;
}

bool caller_now(TimestampTz &now)
{
    if (!in_shard_call())
        return false;
    now = shard_call.now;
    return true;
}

void keep_alert_payload(Datum payload)
{
    struct varlena const *text = bridge::guarded_value(
        [payload] { return pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(payload))); });
    shard_call.payloads.emplace_back(VARDATA_ANY(text), VARSIZE_ANY_EXHDR(text));
}

bool hold_team_here(int64 reservation, Datum &team, bool &through_parents)
{
    connect();
    execute(local_holds_sql, nullptr, nullptr, true);
    bool isnull = false;
    Datum const statement = column(1, &isnull);
    bool found = false;
    if (!isnull) {
        const char *sql = bridge::guarded_value([statement] { return static_cast<const char *>(TextDatumGetCString(statement)); });
        if (local_lookup.sql == nullptr || local_lookup_sql != sql) {
            SPIPlanPtr const old = local_lookup.plan;
            local_lookup.plan = nullptr;
            if (old != nullptr)
                bridge::guarded([old] { (void) SPI_freeplan(old); });
            local_lookup_sql = sql;
            local_lookup.sql = local_lookup_sql.c_str();
        }
        Datum values[1] = {Int64GetDatum(reservation)};
        execute(local_lookup, values, nullptr, true);
        found = SPI_processed == 1;
        if (found) {
            Datum const value = column(1, &isnull);
            team = bridge::guarded_value([value] { return SPI_datumTransfer(value, false, -1); });
            through_parents = DatumGetBool(column(2, &isnull));
        }
    }
    finish();
    return found;
}

Grant charge_on_shard(AccountKey key, int64 amount, bool allow_overdraft)
{
    Datum values[6] = {key.team,        Int64GetDatum(amount), key.resource, BoolGetDatum(allow_overdraft),
                       Int64GetDatum(now()), sent_settings()};
    return run_for_grant(charge_sql, values, nullptr);
}

Grant reserve_on_shard(AccountKey key, int64 amount, const TimestampTz *expires_at, const Datum *idempotency_key)
{
    Datum values[7] = {key.team,
                       Int64GetDatum(amount),
                       key.resource,
                       Int64GetDatum(expires_at != nullptr ? *expires_at : 0),
                       idempotency_key != nullptr ? *idempotency_key : (Datum) 0,
                       Int64GetDatum(now()),
                       sent_settings()};
    char const nulls[7] = {' ', ' ', ' ', expires_at != nullptr ? ' ' : 'n', idempotency_key != nullptr ? ' ' : 'n',
                           ' ', ' '};
    return run_for_grant(reserve_sql, values, nulls);
}

bool commit_on_shard(int64 reservation, const int64 *amount, Grant &grant)
{
    connect();
    /* One hop: sent by a value of the shard its id's bucket says, settled there when it is there. */
    Datum route = (Datum) 0;
    if (shard_access() && route_of_bucket(reservation, route)) {
        Datum values[5] = {route, Int64GetDatum(reservation), Int64GetDatum(amount != nullptr ? *amount : 0),
                           Int64GetDatum(now()), sent_settings()};
        char const nulls[5] = {' ', ' ', amount != nullptr ? ' ' : 'n', ' ', ' '};
        run_twin(commit_on_node_sql, values, nulls);
        bool isnull = false;
        if (SPI_processed == 1 && DatumGetBool(column(10, &isnull)) && !isnull) {
            grant = decode_reply();
            finish();
            return true;
        }
    }
    Datum team = (Datum) 0;
    bool const found = hold_team(reservation, team);
    if (found) {
        Datum values[5] = {team, Int64GetDatum(reservation), Int64GetDatum(amount != nullptr ? *amount : 0),
                           Int64GetDatum(now()), sent_settings()};
        char const nulls[5] = {' ', ' ', amount != nullptr ? ' ' : 'n', ' ', ' '};
        run_twin(commit_sql, values, nulls);
        grant = decode_reply();
    }
    finish();
    return found;
}

bool release_on_shard(int64 reservation, bool &released)
{
    connect();
    Datum route = (Datum) 0;
    if (shard_access() && route_of_bucket(reservation, route)) {
        Datum values[4] = {route, Int64GetDatum(reservation), Int64GetDatum(now()), sent_settings()};
        run_twin(release_on_node_sql, values, nullptr);
        bool isnull = false;
        Datum const reply = SPI_processed == 1 ? column(1, &isnull) : (Datum) 0;
        if (SPI_processed == 1 && !isnull) {
            released = DatumGetBool(reply);
            finish();
            return true;
        }
    }
    Datum team = (Datum) 0;
    bool const found = hold_team(reservation, team);
    if (found) {
        Datum values[4] = {team, Int64GetDatum(reservation), Int64GetDatum(now()), sent_settings()};
        run_twin(release_sql, values, nullptr);
        bool isnull = false;
        released = DatumGetBool(column(1, &isnull));
    }
    finish();
    return found;
}

} // namespace quota::storage
