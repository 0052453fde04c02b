/*
 * store.cpp — the SQL the extension runs, prepared once per backend.
 */
#include "storage/store.hpp"

#include "storage/columns.hpp"
#include "storage/delegate.hpp"
#include "storage/direct.hpp"
#include "storage/sql.hpp"
#include "storage/table.hpp"
#include "storage/schema.hpp"

#include "bridge/error.hpp"
#include "bridge/guard.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <iterator>
#include <map>
#include <string>
#include <utility>

/*
 * Every column read is cast to the type the extension decodes it as: a
 * superuser may change a column's type, and a Datum of another type must
 * never be read as this one (a cast to the same type costs nothing).
 */
#define INT8(c) "CAST(" c " AS pg_catalog.int8)"
#define INT4(c) "CAST(" c " AS pg_catalog.int4)"
#define BOOL(c) "CAST(" c " AS pg_catalog.bool)"
#define TSTZ(c) "CAST(" c " AS pg_catalog.timestamptz)"
#define TEXT(c) "CAST(" c " AS pg_catalog.text)"
#define ACCOUNT_COLUMNS_1_0                                                                                         \
    INT8("a.credit_limit") ", " BOOL("a.unlimited") ", CAST(a.period AS pg_catalog.interval), " TSTZ("a.anchor") \
    ", " TSTZ("a.window_start") ", " TSTZ("a.resets_at") ", " INT8("a.used") ", " INT8("a.held") ", "              \
    TSTZ("a.next_expiry")
#define ACCOUNT_COLUMNS ACCOUNT_COLUMNS_1_0 ", " INT4("a.slots")
#define HOLD_COLUMNS_1_0                                                                                             \
    INT8("h.id") ", " TEXT("h.team") ", " TEXT("h.resource") ", " TEXT("h.state") ", " INT8("h.amount") ", "        \
    TSTZ("h.expires_at")
#define HOLD_COLUMNS HOLD_COLUMNS_1_0 ", " INT4("h.slot")
#define OPEN_HOLDS_OF(team, resource) \
    "h.team" EQ team " AND h.resource" EQ resource " AND h.state" EQ "'open'"

namespace quota::storage {

namespace {

#define ACCOUNT_TYPES INT8OID, BOOLOID, INTERVALOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT8OID, TIMESTAMPTZOID, INT4OID

/*
 * Where a statement touches a column that came with 1.1, its second text is
 * the same statement for a database still at 1.0 (see sql.hpp).
 *
 * SELECT ... FOR UPDATE of one account; `how`: "" (wait) or " SKIP LOCKED" (never wait).
 */
#define LOCK_ACCOUNT_SQL(columns, how)                                                                     \
    "SELECT a.ctid, " columns " FROM ONLY quota.accounts a WHERE a.team" EQ "$1 AND a.resource" EQ "$2" \
    " FOR UPDATE" how

Statement lock_account_sql = {LOCK_ACCOUNT_SQL(ACCOUNT_COLUMNS, ""), LOCK_ACCOUNT_SQL(ACCOUNT_COLUMNS_1_0, ""), 2,
                              {TEXTOID, TEXTOID}};

Statement try_lock_account_sql = {LOCK_ACCOUNT_SQL(ACCOUNT_COLUMNS, " SKIP LOCKED"),
                                  LOCK_ACCOUNT_SQL(ACCOUNT_COLUMNS_1_0, " SKIP LOCKED"), 2, {TEXTOID, TEXTOID}};

/*
 * On Citus, the account is locked by an UPDATE that changes nothing: Citus
 * takes the shard's metadata lock for a modification (not for a SELECT ...
 * FOR UPDATE) and holds it to the end of the transaction, so a shard move
 * waits for the call's transaction, and a call made during a move waits for
 * it and then locks the row where the shard now is.  (With FOR UPDATE, a
 * transaction could lock the row on the old placement, the move finish, and
 * its update land on the new placement over another transaction's.)  A
 * call that must not wait (expire_holds()) takes the row with SKIP LOCKED
 * first (lock_account()).
 */
Statement lock_account_citus_sql = {
    "UPDATE ONLY quota.accounts a SET used = a.used WHERE a.team" EQ "$1 AND a.resource" EQ "$2"
    " RETURNING a.ctid, " ACCOUNT_COLUMNS,
    nullptr, 2, {TEXTOID, TEXTOID}};

/* 1.2: whether set_slots() pinned the account's slot count (run only where the column exists). */
Statement slots_pinned_sql = {
    "SELECT CAST(COALESCE(a.slots_pinned, a.slots OPERATOR(pg_catalog.>) 0) AS pg_catalog.bool)"
    " FROM ONLY quota.accounts a"
    " WHERE a.team" EQ "$1 AND a.resource" EQ "$2",
    nullptr, 2, {TEXTOID, TEXTOID}};

Statement pin_slots_sql = {
    "UPDATE ONLY quota.accounts a SET slots_pinned = $3 WHERE a.team" EQ "$1 AND a.resource" EQ "$2",
    nullptr, 3, {TEXTOID, TEXTOID, BOOLOID}};

Statement fetch_account_sql = {
    "SELECT " ACCOUNT_COLUMNS " FROM ONLY quota.accounts a WHERE a.team" EQ "$1 AND a.resource" EQ "$2",
    "SELECT " ACCOUNT_COLUMNS_1_0 " FROM ONLY quota.accounts a WHERE a.team" EQ "$1 AND a.resource" EQ "$2",
    2, {TEXTOID, TEXTOID}};

/* The credits of an account's open holds past their expiry (readers count them as released). */
Statement expired_held_sql = {
    "SELECT CAST(pg_catalog.sum(h.amount) AS pg_catalog.int8) FROM ONLY quota.holds h"
    " WHERE " OPEN_HOLDS_OF("$1", "$2") " AND h.expires_at" LE "$3",
    nullptr, 3, {TEXTOID, TEXTOID, TIMESTAMPTZOID}};

Statement insert_account_sql = {
    "INSERT INTO quota.accounts (team, resource, credit_limit, unlimited, period, anchor, window_start,"
    " resets_at, used, held, next_expiry, slots) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    " ON CONFLICT (team, resource) DO NOTHING",
    "INSERT INTO quota.accounts (team, resource, credit_limit, unlimited, period, anchor, window_start,"
    " resets_at, used, held, next_expiry) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    " ON CONFLICT (team, resource) DO NOTHING",
    12, {TEXTOID, TEXTOID, ACCOUNT_TYPES}};

Statement update_account_sql = {
    "UPDATE ONLY quota.accounts SET credit_limit = $2, unlimited = $3, period = $4, anchor = $5, window_start = $6,"
    " resets_at = $7, used = $8, held = $9, next_expiry = $10, slots = $11 WHERE ctid" EQ "$1",
    "UPDATE ONLY quota.accounts SET credit_limit = $2, unlimited = $3, period = $4, anchor = $5, window_start = $6,"
    " resets_at = $7, used = $8, held = $9, next_expiry = $10 WHERE ctid" EQ "$1",
    11, {TIDOID, ACCOUNT_TYPES}};

/* On Citus (citus_mode()): the same by the account's key, which Citus sends to the team's shard. */
Statement update_account_citus_sql = {
    "UPDATE ONLY quota.accounts a SET credit_limit = $3, unlimited = $4, period = $5, anchor = $6, window_start = $7,"
    " resets_at = $8, used = $9, held = $10, next_expiry = $11, slots = $12"
    " WHERE a.team" EQ "$1 AND a.resource" EQ "$2",
    nullptr, 12, {TEXTOID, TEXTOID, ACCOUNT_TYPES}};

/* The holds of the account row itself (slot NULL); a slotted account's slots expire theirs in slots.cpp. */
#define EXPIRE_HOLDS_SQL(own)                                                                           \
    "WITH gone AS ("                                                                                    \
    " UPDATE ONLY quota.holds h SET state = 'expired', settled_at = $3"                                      \
    "  WHERE " OPEN_HOLDS_OF("$1", "$2") own " AND h.expires_at" LE "$3"                               \
    "  RETURNING h.amount)"                                                                             \
    " SELECT CAST(COALESCE(pg_catalog.sum(g.amount), 0) AS pg_catalog.int8), pg_catalog.count(*),"     \
    "  (SELECT pg_catalog.min(h.expires_at) FROM ONLY quota.holds h"                                         \
    "    WHERE " OPEN_HOLDS_OF("$1", "$2") own " AND h.expires_at" GT "$3)"                             \
    " FROM gone g"
Statement expire_holds_sql = {EXPIRE_HOLDS_SQL(" AND h.slot IS NULL"), EXPIRE_HOLDS_SQL(""), 3,
                              {TEXTOID, TEXTOID, TIMESTAMPTZOID}};

Statement read_hold_sql = {
    "SELECT " HOLD_COLUMNS " FROM ONLY quota.holds h WHERE h.id" EQ "$1",
    "SELECT " HOLD_COLUMNS_1_0 ", CAST(NULL AS pg_catalog.int4) FROM ONLY quota.holds h WHERE h.id" EQ "$1",
    1, {INT8OID}};

Statement find_hold_sql = {
    "SELECT " HOLD_COLUMNS " FROM ONLY quota.holds h"
    " WHERE h.team" EQ "$1 AND h.resource" EQ "$2 AND h.idempotency_key" EQ "$3",
    "SELECT " HOLD_COLUMNS_1_0 ", CAST(NULL AS pg_catalog.int4) FROM ONLY quota.holds h"
    " WHERE h.team" EQ "$1 AND h.resource" EQ "$2 AND h.idempotency_key" EQ "$3",
    3, {TEXTOID, TEXTOID, TEXTOID}};

Statement insert_hold_sql = {
    "INSERT INTO quota.holds (team, resource, amount, state, idempotency_key, created_at, expires_at, slot)"
    " VALUES ($1, $2, $3, 'open', $4, $5, $6, $7) RETURNING id",
    "INSERT INTO quota.holds (team, resource, amount, state, idempotency_key, created_at, expires_at)"
    " VALUES ($1, $2, $3, 'open', $4, $5, $6) RETURNING id",
    7, {TEXTOID, TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID}};

/* 1.2: a hold made through parents carries its origin (insert_hold() with set_hold_origin()). */
Statement insert_hold_origin_sql = {
    "INSERT INTO quota.holds (id, team, resource, amount, state, idempotency_key, created_at, expires_at, slot, origin)"
    " VALUES (COALESCE($9, pg_catalog.nextval(CAST('quota.holds_id_seq' AS pg_catalog.regclass))),"
    " $1, $2, $3, 'open', $4, $5, $6, $7, $8) RETURNING id",
    nullptr, 9, {TEXTOID, TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, INT8OID, INT8OID}};

/* On Citus: the id drawn where the statement runs, with that node's group and the team's bucket (quota._cluster_id). */
Statement insert_hold_citus_sql = {
    "INSERT INTO quota.holds (id, team, resource, amount, state, idempotency_key, created_at, expires_at, slot, origin)"
    " VALUES (COALESCE($9, quota._cluster_id(pg_catalog.nextval(CAST('quota.holds_id_seq' AS pg_catalog.regclass)), $1)),"
    " $1, $2, $3, 'open', $4, $5, $6, $7, $8) RETURNING id",
    nullptr, 9, {TEXTOID, TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, INT8OID, INT8OID}};

Statement next_hold_id_sql = {
    "SELECT pg_catalog.nextval(CAST('quota.holds_id_seq' AS pg_catalog.regclass))", nullptr, 0, {}};

Statement next_hold_id_citus_sql = {
    "SELECT quota._cluster_id(pg_catalog.nextval(CAST('quota.holds_id_seq' AS pg_catalog.regclass)), NULL)", nullptr, 0,
    {}};

Statement read_hold_origin_sql = {
    "SELECT " HOLD_COLUMNS ", " INT8("h.origin") " FROM ONLY quota.holds h WHERE h.id" EQ "$1", nullptr, 1, {INT8OID}};

/* In a call sent to its team's shard (delegate.hpp): with the team, so that the read stays on the shard. */
Statement read_hold_on_shard_sql = {
    "SELECT " HOLD_COLUMNS ", " INT8("h.origin") " FROM ONLY quota.holds h WHERE h.id" EQ "$1 AND h.team" EQ "$2",
    nullptr, 2, {INT8OID, TEXTOID}};

Statement settle_hold_sql = {
    "UPDATE ONLY quota.holds SET state = $2, settled_at = $3, committed = $4 WHERE id" EQ "$1",
    nullptr, 4, {INT8OID, TEXTOID, TIMESTAMPTZOID, INT8OID}};

/* On Citus: with the team, so that Citus sends it to one shard. */
Statement settle_hold_citus_sql = {
    "UPDATE ONLY quota.holds h SET state = $2, settled_at = $3, committed = $4 WHERE h.id" EQ "$1 AND h.team" EQ "$5",
    nullptr, 5, {INT8OID, TEXTOID, TIMESTAMPTZOID, INT8OID, TEXTOID}};

/* Lock a hold row unless another transaction holds it (none but purge_holds() can, once its account is locked). */
Statement try_lock_hold_sql = {
    "SELECT h.id FROM ONLY quota.holds h WHERE h.id" EQ "$1 FOR UPDATE SKIP LOCKED", nullptr, 1, {INT8OID}};

Statement try_lock_hold_citus_sql = {
    "SELECT h.id FROM ONLY quota.holds h WHERE h.id" EQ "$1 AND h.team" EQ "$2 FOR UPDATE SKIP LOCKED", nullptr, 2,
    {INT8OID, TEXTOID}};

/* The same, only while the hold is still as the caller read it (state and slot); no row: it changed. */
Statement settle_unchanged_hold_sql = {
    "UPDATE ONLY quota.holds h SET state = $2, settled_at = $3, committed = $4 WHERE h.id" EQ "$1"
    " AND h.state" EQ "$5 AND (h.slot" EQ "$6 OR (h.slot IS NULL AND $6 IS NULL))",
    "UPDATE ONLY quota.holds h SET state = $2, settled_at = $3, committed = $4 WHERE h.id" EQ "$1"
    " AND h.state" EQ "$5",
    6, {INT8OID, TEXTOID, TIMESTAMPTZOID, INT8OID, TEXTOID, INT4OID}};

Statement settle_unchanged_hold_citus_sql = {
    "UPDATE ONLY quota.holds h SET state = $2, settled_at = $3, committed = $4 WHERE h.id" EQ "$1"
    " AND h.team" EQ "$7 AND h.state" EQ "$5 AND (h.slot" EQ "$6 OR (h.slot IS NULL AND $6 IS NULL))",
    nullptr, 7, {INT8OID, TEXTOID, TIMESTAMPTZOID, INT8OID, TEXTOID, INT4OID, TEXTOID}};

Statement lock_expired_sql = {
    "SELECT " TEXT("a.team") ", " TEXT("a.resource") " FROM ONLY quota.accounts a WHERE a.next_expiry" LE "$1"
    " FOR UPDATE SKIP LOCKED",
    nullptr, 1, {TIMESTAMPTZOID}};

/*
 * On Citus the accounts are only listed (a lock over many shards is not
 * possible); the caller locks each one, never waiting.
 */
Statement list_expired_citus_sql = {
    "SELECT " TEXT("a.team") ", " TEXT("a.resource") " FROM ONLY quota.accounts a WHERE a.next_expiry" LE "$1",
    nullptr, 1, {TIMESTAMPTZOID}};

bool citus()
{
    return bridge::guarded_value([] { return citus_mode(); });
}

bool text_equals(Datum value, const char *literal)
{
    auto const *text = reinterpret_cast<const struct varlena *>(DatumGetPointer(value));
    size_t const length = VARSIZE_ANY_EXHDR(text);
    return length == std::strlen(literal) && std::memcmp(VARDATA_ANY(text), literal, length) == 0;
}

const char *state_name(HoldState state)
{
    switch (state) {
    case HoldState::Open:
        return "open";
    case HoldState::Committed:
        return "committed";
    case HoldState::Released:
        return "released";
    case HoldState::Expired:
        return "expired";
    }
    return "open";
}

HoldState state_from(Datum value)
{
    constexpr HoldState states[] = {HoldState::Open, HoldState::Committed, HoldState::Released, HoldState::Expired};
    auto const found = std::find_if(std::begin(states), std::end(states),
                                    [value](HoldState state) { return text_equals(value, state_name(state)); });
    if (found == std::end(states))
        throw Error(ERRCODE_DATA_CORRUPTED, "unknown hold state in quota.holds");
    return *found;
}

/* The first row of a HOLD_COLUMNS result. */
Hold decode_hold()
{
    bool isnull = false;
    Hold hold;
    hold.id = DatumGetInt64(column(1, &isnull));
    hold.key.team = column(2, &isnull);
    hold.key.resource = column(3, &isnull);
    hold.state = state_from(column(4, &isnull));
    hold.amount = DatumGetInt64(column(5, &isnull));
    Datum const expires_at = column(6, &isnull);
    hold.has_expires_at = !isnull;
    hold.expires_at = isnull ? 0 : DatumGetTimestampTz(expires_at);
    Datum const slot = column(7, &isnull);
    hold.has_slot = !isnull;
    hold.slot = isnull ? 0 : DatumGetInt32(slot);
    if (SPI_tuptable->tupdesc->natts >= 8) {
        Datum const origin = column(8, &isnull);
        hold.origin = isnull ? 0 : DatumGetInt64(origin);
    }
    return hold;
}

int64 hold_origin = 0;
int64 hold_own_id = 0;

/* quota.holds.origin came with 1.2. */
bool has_origin_column()
{
    return bridge::guarded_value([] {
        Oid const relation = table_oid(kHolds);
        return OidIsValid(relation) && get_attnum(relation, "origin") != InvalidAttrNumber;
    });
}

} // namespace

/*
 * Prepare a statement for the backend's life.  Every statement here is a
 * point lookup or update by key, so its plan is built now, once, as a
 * generic plan with sequential scans off: left to the plan cache, a plan
 * made while a table was empty (or analyzed empty) would keep scanning it
 * sequentially as it grows, until an invalidation replans it.  A replan
 * after an invalidation (ANALYZE, DDL) uses the statistics of that time.
 * Call inside guarded().
 */
namespace {

/* A plain statement that names its team by a parameter: Citus sends it to the team's shard. */
bool routed_by_team(const char *sql)
{
    return std::strstr(sql, "team" EQ "$") != nullptr && std::strncmp(sql, "WITH", 4) != 0;
}

/*
 * A statement Citus plans only from each run's values: on Citus, one that
 * reads distributed tables and does not name its team by a parameter (over
 * every shard, an INSERT, a WITH).  A plain statement that names its team
 * keeps one plan (Citus finds the shard at each run), as does one that
 * reads no distributed table.
 */
bool planned_per_run(const Statement &statement, bool on_citus)
{
    return on_citus && !statement.routed && !statement.local;
}

/* One plan for every run, but for planned_per_run(). */
SPIPlanPtr prepare(const char *sql, const Statement &statement, bool on_citus)
{
    SPIPlanPtr plan = SPI_prepare_cursor(sql, statement.nargs, const_cast<Oid *>(statement.types),
                                         planned_per_run(statement, on_citus) ? CURSOR_OPT_CUSTOM_PLAN
                                                                              : CURSOR_OPT_GENERIC_PLAN);
    if (plan == nullptr)
        elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
    if (SPI_keepplan(plan) != 0)
        elog(ERROR, "SPI_keepplan failed");

    /* jit off too: where a sequential scan is the only plan, its disable cost would trigger JIT at every run. */
    int const nest_level = NewGUCNestLevel();
    (void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
    (void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
    CachedPlan *cached = SPI_plan_get_cached_plan(plan);
    if (cached != nullptr)
        ReleaseCachedPlan(cached, CurrentResourceOwner);
    AtEOXact_GUC(true, nest_level);
    return plan;
}

/*
 * Bound shards (table.hpp): each statement's text with quota's co-located
 * tables renamed to the team's shards, prepared once per set of shards and
 * kept, the sets least recently bound freed first past kMaxShardPlans
 * plans (a backend uses about 15 statements per set, a worker holds a few
 * dozen sets).  A shard dropped and made again under the same name (moved
 * away and back) is found again by the plan cache, which analyzes a kept
 * plan's text anew after such a change.
 */
using ShardIds = std::array<int64, kShardTables>;
struct ShardPlans {
    uint64 used = 0; /* when these shards were last bound (shard_clock) */
    std::map<const Statement *, SPIPlanPtr> plans;
};
std::map<ShardIds, ShardPlans> shard_plans;
size_t shard_plan_count = 0;
uint64 shard_clock = 0;
constexpr size_t kMaxShardPlans = 1024;

/* Free the plans of the set of shards least recently bound. */
void free_oldest_shard_plans()
{
    auto const oldest = std::min_element(shard_plans.begin(), shard_plans.end(), [](const auto &a, const auto &b) {
        return a.second.used < b.second.used;
    });
    if (oldest == shard_plans.end())
        return;
    for (auto &entry : oldest->second.plans) {
        SPIPlanPtr const old = entry.second;
        bridge::guarded([old] { (void) SPI_freeplan(old); });
    }
    shard_plan_count -= oldest->second.plans.size();
    shard_plans.erase(oldest);
}

std::string on_shards(const char *sql, const ShardBinding &shards)
{
    std::string text(sql);
    for (int i = 0; i < kShardTables; i++) {
        std::string const name = std::string("quota.") + kShardTableNames[i];
        std::string const shard = name + "_" + std::to_string(shards.shard[i]);
        for (size_t at = text.find(name); at != std::string::npos; at = text.find(name, at)) {
            size_t const end = at + name.size();
            char const next = end < text.size() ? text[end] : ' ';
            bool const whole = !(std::isalnum(static_cast<unsigned char>(next)) || next == '_');
            if (whole) {
                text.replace(at, name.size(), shard);
                at += shard.size();
            } else {
                at = end;
            }
        }
    }
    return text;
}

/* The plan of a statement on the bound shards, prepared on first use. */
SPIPlanPtr shard_plan(const Statement &statement, const ShardBinding &shards)
{
    ShardIds ids;
    std::copy(std::begin(shards.shard), std::end(shards.shard), ids.begin());
    auto set = shard_plans.find(ids);
    if (set != shard_plans.end()) {
        set->second.used = ++shard_clock;
        auto const found = set->second.plans.find(&statement);
        if (found != set->second.plans.end())
            return found->second;
    }
    while (shard_plan_count >= kMaxShardPlans && shard_plans.size() > 1)
        free_oldest_shard_plans();
    std::string const sql = on_shards(statement.sql, shards);
    const char *text = sql.c_str();
    SPIPlanPtr const plan = bridge::guarded_value([&] { return prepare(text, statement, false); });
    ShardPlans &plans = shard_plans[ids];
    plans.used = ++shard_clock;
    plans.plans.emplace(&statement, plan);
    shard_plan_count++;
    return plan;
}

} // namespace

void execute(Statement &statement, Datum *values, const char *nulls, bool read_only, Snapshot snapshot)
{
    const ShardBinding *shards = statement.local ? nullptr : bridge::guarded_value([] { return bound_shards(); });
    if (shards != nullptr) {
        /* Quota on Citus is at 1.2: the statement's own text; the shards are this node's plain tables. */
        SPIPlanPtr const plan = shard_plan(statement, *shards);
        bridge::guarded([&] {
            int const rc = snapshot != nullptr
                               ? SPI_execute_snapshot(plan, values, nulls, snapshot, InvalidSnapshot, read_only, false, 0)
                               : SPI_execute_plan(plan, values, nulls, read_only, 0);
            if (rc < 0)
                elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
        });
        return;
    }
    bool const for_1_0 = statement.sql_1_0 != nullptr && !schema_has_slots();
    bridge::guarded([&] {
        bool const on_citus = citus_mode();
        if (statement.plan != nullptr && (statement.prepared_for_1_0 != for_1_0 || statement.prepared_on_citus != on_citus)) {
            (void) SPI_freeplan(statement.plan); /* ALTER EXTENSION quota UPDATE, or quota.distribute(), ran since */
            statement.plan = nullptr;
        }
        if (statement.plan == nullptr) {
            statement.routed = routed_by_team(for_1_0 ? statement.sql_1_0 : statement.sql);
            statement.plan = prepare(for_1_0 ? statement.sql_1_0 : statement.sql, statement, on_citus);
            statement.prepared_for_1_0 = for_1_0;
            statement.prepared_on_citus = on_citus;
        }
        /*
         * A statement Citus may send to several shards (a reservation alone
         * does not name its team): one connection per worker for it.  Citus
         * would open up to 16 per worker for each call, and with many
         * clients wait for its shared pool of connections.
         */
        bool const pooled = planned_per_run(statement, on_citus);
        /*
         * A caller's citus.function_opens_transaction_block = off would let
         * Citus commit the statement's work on the worker at once, which the
         * caller's rollback would then not undo: on for quota's statements.
         */
        const char *blocks = on_citus ? GetConfigOption("citus.function_opens_transaction_block", true, false) : nullptr;
        bool const block = blocks != nullptr && std::strcmp(blocks, "on") != 0;
        int const nest = pooled || block ? NewGUCNestLevel() : 0;
        if (pooled)
            (void) set_config_option("citus.max_adaptive_executor_pool_size", "1", PGC_USERSET, PGC_S_SESSION,
                                     GUC_ACTION_SAVE, true, 0, false);
        if (block)
            (void) set_config_option("citus.function_opens_transaction_block", "on", PGC_USERSET, PGC_S_SESSION,
                                     GUC_ACTION_SAVE, true, 0, false);
        int const rc = snapshot != nullptr ? SPI_execute_snapshot(statement.plan, values, nulls, snapshot,
                                                                  InvalidSnapshot, read_only, false, 0)
                                           : SPI_execute_plan(statement.plan, values, nulls, read_only, 0);
        if (nest != 0)
            AtEOXact_GUC(true, nest);
        if (rc < 0)
            elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
    });
}

Datum column(int number, bool *isnull)
{
    return column_of(0, number, isnull);
}

Datum column_of(uint64 row, int number, bool *isnull)
{
    return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, number, isnull);
}


Snapshot take_snapshot(Intent intent)
{
    return bridge::guarded_value([intent] {
        if (intent == Intent::Read)
            return RegisterSnapshot(GetActiveSnapshot());
        CommandCounterIncrement(); /* see this transaction's own earlier changes */
        return RegisterSnapshot(GetTransactionSnapshot());
    });
}

void drop_snapshot(Snapshot snapshot)
{
    bridge::guarded([snapshot] { UnregisterSnapshot(snapshot); });
}

void begin_call(Intent intent)
{
    bridge::guarded([intent] { start_call(intent == Intent::Write); });
}

void connect()
{
    bridge::guarded([] {
        if (SPI_connect() != SPI_OK_CONNECT)
            elog(ERROR, "SPI_connect failed");
    });
}

void finish()
{
    bridge::guarded([] {
        if (SPI_finish() != SPI_OK_FINISH)
            elog(ERROR, "SPI_finish failed");
    });
}

bool lock_account(AccountKey key, Account &account, ItemPointerData &row, const ItemPointerData *seen)
{
    return lock_account(key, account, row, seen, true) == RowLock::Locked;
}

namespace {

bool impatience = false;

RowLock lock_account_once(AccountKey key, Account &account, ItemPointerData &row, const ItemPointerData *seen, bool wait);

} // namespace

Impatience::Impatience(bool on) : before_(impatience)
{
    impatience = on;
}

Impatience::~Impatience()
{
    impatience = before_;
}

bool impatient()
{
    return impatience;
}

RowLock lock_account(AccountKey key, Account &account, ItemPointerData &row, const ItemPointerData *seen, bool wait)
{
    RowLock const got = lock_account_once(key, account, row, seen, wait && !impatience);
    if (got == RowLock::Busy && wait)
        throw WouldWait();
    return got;
}

namespace {

RowLock lock_account_once(AccountKey key, Account &account, ItemPointerData &row, const ItemPointerData *seen, bool wait)
{
    RowLock found = RowLock::Missing;
    if (lock_account_direct(key, seen, wait, account, row, found))
        return found;
    Datum values[2] = {key.team, key.resource};
    if (!citus()) {
        execute(wait ? lock_account_sql : try_lock_account_sql, values, nullptr, false);
    } else {
        /* A call that must not wait first takes the row only if it is free (then the UPDATE does not wait for it). */
        if (!wait)
            execute(try_lock_account_sql, values, nullptr, false);
        if (wait || SPI_processed > 0)
            execute(lock_account_citus_sql, values, nullptr, false);
    }
    if (SPI_processed == 0) {
        Account exists;
        return !wait && fetch_account(key, exists) ? RowLock::Busy : RowLock::Missing;
    }
    /* A database at 1.0 returns no slots column: SPI_getbinval then reports NULL, read as no slots. */
    account = decode_account([](int i, bool *isnull) { return column(i + 2, isnull); });
    bool isnull = false;
    row = *reinterpret_cast<ItemPointer>(DatumGetPointer(column(1, &isnull)));
    return RowLock::Locked;
}

} // namespace

namespace {

/* quota.accounts.slots_pinned came with 1.2. */
bool has_pin_column()
{
    return bridge::guarded_value([] {
        Oid const relation = table_oid(kAccounts);
        return OidIsValid(relation) && get_attnum(relation, "slots_pinned") != InvalidAttrNumber;
    });
}

} // namespace

bool slots_automatic(AccountKey key)
{
    if (!has_pin_column())
        return false;
    Datum values[2] = {key.team, key.resource};
    execute(slots_pinned_sql, values, nullptr, false);
    bool isnull = false;
    return SPI_processed == 1 && !DatumGetBool(column(1, &isnull)) && !isnull;
}

void pin_slots(AccountKey key, bool pinned)
{
    if (!has_pin_column())
        return;
    Datum values[3] = {key.team, key.resource, BoolGetDatum(pinned)};
    execute(pin_slots_sql, values, nullptr, false);
}

bool fetch_account(AccountKey key, Account &account, Snapshot snapshot, ItemPointerData *where)
{
    bool found = false;
    if (fetch_account_direct(key, snapshot, AccessShareLock, account, found, where))
        return found;
    if (where != nullptr)
        ItemPointerSetInvalid(where); /* the SQL path finds the row itself */
    /* Not as installed: SQL, in an SPI connection of its own (the caller may or may not have one). */
    Datum values[2] = {key.team, key.resource};
    connect();
    execute(fetch_account_sql, values, nullptr, true, snapshot);
    found = SPI_processed > 0;
    if (found)
        account = decode_account([](int i, bool *isnull) { return column(i + 1, isnull); });
    finish();
    return found;
}

int64 expired_held(AccountKey key, TimestampTz at, Snapshot snapshot)
{
    Datum values[3] = {key.team, key.resource, TimestampTzGetDatum(at)};
    execute(expired_held_sql, values, nullptr, true, snapshot);
    bool isnull = false;
    Datum const sum = column(1, &isnull);
    return isnull ? 0 : DatumGetInt64(sum);
}

bool insert_account(AccountKey key, const Account &account)
{
    Datum values[2 + kAccountColumns] = {key.team, key.resource};
    char nulls[2 + kAccountColumns] = {' ', ' '};
    bridge::guarded([&] { encode_account(account, values + 2, nulls + 2); });
    execute(insert_account_sql, values, nulls, false);
    return SPI_processed == 1;
}

void update_account(AccountKey key, const ItemPointerData &row, const Account &account)
{
    if (update_account_direct(row, account))
        return;
    if (citus()) {
        Datum values[2 + kAccountColumns] = {key.team, key.resource};
        char nulls[2 + kAccountColumns] = {' ', ' '};
        bridge::guarded([&] { encode_account(account, values + 2, nulls + 2); });
        execute(update_account_citus_sql, values, nulls, false);
        if (SPI_processed != 1)
            throw Error(ERRCODE_INTERNAL_ERROR, "quota account row vanished while locked");
        return;
    }
    ItemPointerData target = row;
    Datum values[1 + kAccountColumns] = {PointerGetDatum(&target)};
    char nulls[1 + kAccountColumns] = {' '};
    bridge::guarded([&] { encode_account(account, values + 1, nulls + 1); });
    execute(update_account_sql, values, nulls, false);
    if (SPI_processed != 1)
        throw Error(ERRCODE_INTERNAL_ERROR, "quota account row vanished while locked");
}

ExpiredHolds expire_holds(AccountKey key, TimestampTz now)
{
    Datum values[3] = {key.team, key.resource, TimestampTzGetDatum(now)};
    execute(expire_holds_sql, values, nullptr, false);
    return expired_holds_result();
}

ExpiredHolds expired_holds_result()
{
    ExpiredHolds expired;
    bool isnull = false;
    expired.amount = DatumGetInt64(column(1, &isnull));
    expired.count = DatumGetInt64(column(2, &isnull));
    Datum const next = column(3, &isnull);
    expired.has_next_expiry = !isnull;
    expired.next_expiry = isnull ? 0 : DatumGetTimestampTz(next);
    return expired;
}

bool read_hold(int64 id, Hold &hold)
{
    Datum values[2] = {Int64GetDatum(id), (Datum) 0};
    if (in_shard_call()) {
        values[1] = shard_call_team();
        execute(read_hold_on_shard_sql, values, nullptr, false);
    } else {
        execute(has_origin_column() ? read_hold_origin_sql : read_hold_sql, values, nullptr, false);
    }
    if (SPI_processed == 0)
        return false;
    hold = decode_hold();
    return true;
}

void set_hold_origin(int64 origin, int64 own_id)
{
    hold_origin = origin;
    hold_own_id = own_id;
}

int64 next_hold_id()
{
    connect();
    /* On Citus ids carry their node's group, bound shards or not. */
    execute(distributed() ? next_hold_id_citus_sql : next_hold_id_sql, nullptr, nullptr, false);
    bool isnull = false;
    int64 const id = DatumGetInt64(column(1, &isnull));
    finish();
    return id;
}

bool find_hold(AccountKey key, Datum idempotency_key, Hold &hold)
{
    Datum values[3] = {key.team, key.resource, idempotency_key};
    execute(find_hold_sql, values, nullptr, false);
    if (SPI_processed == 0)
        return false;
    hold = decode_hold();
    return true;
}

int64 insert_hold(AccountKey key, int64 amount, TimestampTz now, const TimestampTz *expires_at,
                  const Datum *idempotency_key, const int32 *slot)
{
    Datum values[7] = {key.team,
                       key.resource,
                       Int64GetDatum(amount),
                       idempotency_key != nullptr ? *idempotency_key : (Datum) 0,
                       TimestampTzGetDatum(now),
                       expires_at != nullptr ? TimestampTzGetDatum(*expires_at) : (Datum) 0,
                       slot != nullptr ? Int32GetDatum(*slot) : (Datum) 0};
    char nulls[9] = {' ', ' ', ' ', idempotency_key != nullptr ? ' ' : 'n', ' ', expires_at != nullptr ? ' ' : 'n',
                     slot != nullptr ? ' ' : 'n', hold_origin != 0 ? ' ' : 'n', hold_own_id != 0 ? ' ' : 'n'};
    bool const on_citus = distributed(); /* the id with its node's group, bound shards or not */
    if (hold_origin != 0 || on_citus) {
        Datum with_origin[9];
        std::copy(values, values + 7, with_origin);
        with_origin[7] = Int64GetDatum(hold_origin);
        with_origin[8] = Int64GetDatum(hold_own_id);
        execute(on_citus ? insert_hold_citus_sql : insert_hold_origin_sql, with_origin, nulls, false);
    } else {
        execute(insert_hold_sql, values, nulls, false);
    }
    bool isnull = false;
    return DatumGetInt64(column(1, &isnull));
}

void settle_hold(AccountKey key, int64 id, HoldState state, TimestampTz now, const int64 *committed)
{
    Datum values[5] = {Int64GetDatum(id), (Datum) 0, TimestampTzGetDatum(now),
                       committed != nullptr ? Int64GetDatum(*committed) : (Datum) 0, key.team};
    char nulls[5] = {' ', ' ', ' ', committed != nullptr ? ' ' : 'n', ' '};
    const char *name = state_name(state);
    values[1] = bridge::guarded_value([&] { return CStringGetTextDatum(name); });
    execute(citus() ? settle_hold_citus_sql : settle_hold_sql, values, nulls, false);
}

bool try_lock_hold(AccountKey key, int64 id)
{
    Datum values[2] = {Int64GetDatum(id), key.team};
    execute(citus() ? try_lock_hold_citus_sql : try_lock_hold_sql, values, nullptr, false);
    return SPI_processed == 1;
}

bool settle_unchanged_hold(const Hold &seen, HoldState state, TimestampTz now, const int64 *committed)
{
    Datum values[7] = {Int64GetDatum(seen.id), (Datum) 0, TimestampTzGetDatum(now),
                       committed != nullptr ? Int64GetDatum(*committed) : (Datum) 0, (Datum) 0,
                       Int32GetDatum(seen.slot), seen.key.team};
    char nulls[7] = {' ', ' ', ' ', committed != nullptr ? ' ' : 'n', ' ', seen.has_slot ? ' ' : 'n', ' '};
    const char *name = state_name(state);
    const char *was = state_name(seen.state);
    bridge::guarded([&] {
        values[1] = CStringGetTextDatum(name);
        values[4] = CStringGetTextDatum(was);
    });
    execute(citus() ? settle_unchanged_hold_citus_sql : settle_unchanged_hold_sql, values, nulls, false);
    return SPI_processed == 1;
}

std::vector<AccountKey> lock_accounts_with_expired_holds(TimestampTz now)
{
    Datum values[1] = {TimestampTzGetDatum(now)};
    execute(citus() ? list_expired_citus_sql : lock_expired_sql, values, nullptr, false);
    std::vector<AccountKey> keys;
    keys.reserve(SPI_processed);
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool isnull = false;
        HeapTuple tuple = SPI_tuptable->vals[i];
        keys.push_back(AccountKey{SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull),
                                  SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull)});
    }
    return keys;
}

Account account_from_row(HeapTupleHeader row, bool with_slots)
{
    Account account;
    int const columns = with_slots ? kAccountColumns : kAccountColumns_1_0;
    bridge::guarded([&] {
        /* Each column is read only as the type it has: a column whose type was changed is an error, not garbage. */
        TupleDesc desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(row), HeapTupleHeaderGetTypMod(row));
        HeapTupleData tuple;
        tuple.t_len = HeapTupleHeaderGetDatumLength(row);
        ItemPointerSetInvalid(&tuple.t_self);
        tuple.t_tableOid = InvalidOid;
        tuple.t_data = row;
        AttrNumber attnums[kAccountColumns] = {};
        for (int a = 0; a < desc->natts; a++) {
            Form_pg_attribute const attribute = TupleDescAttr(desc, a);
            for (int i = 0; i < columns && !attribute->attisdropped; i++) {
                ColumnSpec const &spec = kAccounts.column[kAccountFirstColumn + i];
                if (std::strcmp(NameStr(attribute->attname), spec.name) != 0)
                    continue;
                if (attribute->atttypid != spec.type)
                    ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                                    errmsg("column \"%s\" of quota.accounts has type %s, not %s", spec.name,
                                           format_type_be(attribute->atttypid), format_type_be(spec.type))));
                attnums[i] = attribute->attnum;
            }
        }
        /* Any row is taken (a Citus shard's has its own type), but only one with the account's columns. */
        for (int i = 0; i < kAccountColumns_1_0; i++)
            if (attnums[i] == 0)
                ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                                errmsg("the row has no column \"%s\" of quota.accounts",
                                       kAccounts.column[kAccountFirstColumn + i].name)));
        account = decode_account([&](int i, bool *isnull) {
            if (i >= columns || attnums[i] == 0) {
                *isnull = true;
                return (Datum) 0;
            }
            return heap_getattr(&tuple, attnums[i], desc, isnull);
        });
        ReleaseTupleDesc(desc);
    });
    return account;
}

namespace {

/* A name for a message: at most kMaxNameBytes, cut on a character boundary (names stored before 1.2 may be longer). */
const char *shown_name(Datum value)
{
    return bridge::guarded_value([value] {
        text *name = DatumGetTextPP(value);
        int const length = VARSIZE_ANY_EXHDR(name);
        int const shown = pg_mbcliplen(VARDATA_ANY(name), length, static_cast<int>(kMaxNameBytes));
        int const ellipsis = shown < length ? 3 : 0;
        char *result = static_cast<char *>(palloc(shown + ellipsis + 1));
        std::memcpy(result, VARDATA_ANY(name), shown);
        std::memcpy(result + shown, "...", ellipsis);
        result[shown + ellipsis] = '\0';
        return static_cast<const char *>(result);
    });
}

} // namespace

std::string cache_key(AccountKey key)
{
    std::string name;
    for (Datum value : {key.team, key.resource}) {
        struct Bytes {
            const char *data;
            size_t length;
        };
        Bytes const bytes = bridge::guarded_value([value] {
            struct varlena *flat = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(value)));
            return Bytes{VARDATA_ANY(flat), VARSIZE_ANY_EXHDR(flat)};
        });
        name.append(bytes.data, bytes.length);
        name.push_back('\0');
    }
    return name;
}

const char *team_name(AccountKey key)
{
    return shown_name(key.team);
}

const char *resource_name(AccountKey key)
{
    return shown_name(key.resource);
}

bool distributed()
{
    return bridge::guarded_value([] { return citus_distributed(); });
}

} // namespace quota::storage
