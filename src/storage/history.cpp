/*
 * history.cpp — the SQL for the 1.2 tables around the ledger:
 * quota.history (what closed windows ended with), quota.alert_settings
 * (thresholds set by set_alerts) and quota.events (alerts raised).
 *
 * None of it runs on a call that neither rolls an account over nor
 * crosses a threshold: the ledger asks for thresholds through the
 * per-backend cache of budget/alerts.cpp, which reads alert_settings once
 * per account until set_alerts() changes it — directly through its primary
 * key while the table is as installed (table.hpp), with SQL otherwise.
 */
#include "storage/store.hpp"

#include "bridge/guard.hpp"
#include "storage/delegate.hpp"
#include "storage/schema.hpp"
#include "storage/sql.hpp"

namespace quota::storage {

namespace {

/* Each part (the account row, or one slot) is written by the holder of its row's lock only. */
Statement record_history_sql = {
    "INSERT INTO quota.history AS h (team, resource, window_start, part, window_end, credit_limit, unlimited, used)"
    " SELECT $1, $2, $3, $4, $5, $6, $7, $8"
    " WHERE $5 OPERATOR(pg_catalog.>=)"
    "  COALESCE((SELECT r.ended_before FROM quota.history_purged r), '-infinity')" /* not purged already */
    " ON CONFLICT (team, resource, window_start, window_end, part)"
    " DO UPDATE SET used = h.used OPERATOR(pg_catalog.+) EXCLUDED.used,"
    "  credit_limit = EXCLUDED.credit_limit, unlimited = EXCLUDED.unlimited",
    nullptr, 8, {TEXTOID, TEXTOID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, INT8OID, BOOLOID, INT8OID}};

Statement thresholds_sql = {
    "SELECT CAST(s.thresholds AS pg_catalog.int4[]) FROM ONLY quota.alert_settings s"
    " WHERE s.team" EQ "$1 AND s.resource" EQ "$2",
    nullptr, 2, {TEXTOID, TEXTOID}};

Statement any_thresholds_sql = {"SELECT FROM ONLY quota.alert_settings s LIMIT 1", nullptr, 0, {}};

Statement write_thresholds_sql = {
    "INSERT INTO quota.alert_settings AS s (team, resource, thresholds) VALUES ($1, $2, $3)"
    " ON CONFLICT (team, resource) DO UPDATE SET thresholds = EXCLUDED.thresholds",
    nullptr, 3, {TEXTOID, TEXTOID, INT4ARRAYOID}};

Statement delete_thresholds_sql = {
    "DELETE FROM ONLY quota.alert_settings s WHERE s.team" EQ "$1 AND s.resource" EQ "$2", nullptr, 2,
    {TEXTOID, TEXTOID}};

/* Once per (team, resource, window_start, threshold): a unique key, not a check-then-insert. */
#define INSERT_EVENT_WITH(id_column, id_value, then)                                                             \
    "WITH e AS ("                                                                                                \
    " INSERT INTO quota.events (" id_column "team, resource, window_start, resets_at, threshold, used, held,"    \
    "  credit_limit, created_at)"                                                                                \
    " VALUES (" id_value "$1, $2, $3, $4, $5, $6, $7, $8, $9)"                                                   \
    " ON CONFLICT (team, resource, window_start, threshold) DO NOTHING"                                          \
    " RETURNING *) " then
#define INSERT_EVENT(then) INSERT_EVENT_WITH("", "", then)
/* On Citus: the id drawn where the statement runs, with that node's group and the team's bucket (quota._cluster_id). */
#define INSERT_EVENT_CITUS(then)                                                                                 \
    INSERT_EVENT_WITH("id, ",                                                                                    \
                      "quota._cluster_id(pg_catalog.nextval(CAST('quota.events_id_seq' AS pg_catalog.regclass)), $1), ", \
                      then)
#define EVENT_TYPES {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID}

Statement insert_event_sql = {
    INSERT_EVENT("SELECT pg_catalog.pg_notify('quota_events', CAST(pg_catalog.row_to_json(e) AS pg_catalog.text)) FROM e"),
    nullptr, 9, EVENT_TYPES};

/* quota.notify_events off: stored only. */
Statement store_event_sql = {INSERT_EVENT("SELECT FROM e"), nullptr, 9, EVENT_TYPES};

Statement insert_event_citus_sql = {
    INSERT_EVENT_CITUS(
        "SELECT pg_catalog.pg_notify('quota_events', CAST(pg_catalog.row_to_json(e) AS pg_catalog.text)) FROM e"),
    nullptr, 9, EVENT_TYPES};
Statement store_event_citus_sql = {INSERT_EVENT_CITUS("SELECT FROM e"), nullptr, 9, EVENT_TYPES};
/* In a call sent to its team's shard (delegate.hpp): the payload goes back to the caller, who notifies it. */
Statement keep_event_citus_sql = {
    INSERT_EVENT_CITUS("SELECT CAST(pg_catalog.row_to_json(e) AS pg_catalog.text) FROM e"), nullptr, 9, EVENT_TYPES};

/* Whether quota.<name> exists (a database not yet at 1.2 has none of these tables). */
bool has_table(const char *name)
{
    return bridge::guarded_value(
        [name] { return OidIsValid(get_relname_relid(name, get_namespace_oid("quota", false))); });
}

} // namespace

void record_history(AccountKey key, const ClosedWindow &closed)
{
    if (!has_table("history"))
        return;
    Datum values[8] = {key.team,
                       key.resource,
                       TimestampTzGetDatum(closed.start),
                       Int32GetDatum(closed.part),
                       TimestampTzGetDatum(closed.end),
                       Int64GetDatum(closed.credit_limit),
                       BoolGetDatum(closed.unlimited),
                       Int64GetDatum(closed.used)};
    connect(); /* callers may or may not have an SPI connection */
    execute(record_history_sql, values, nullptr, false);
    finish();
}

namespace {

/* What a direct read of one account's thresholds found (plain data, out of guarded()). */
struct DirectThresholds {
    enum { NoTable, NotDirect, Missing, Found } result = NoTable;
    int count = 0;
    int32 values[kMaxStoredThresholds] = {};
};

/* A stored int4[] of thresholds into `found` (Found; NULL elements skipped).  Call inside guarded(). */
void take_thresholds(Datum array, DirectThresholds &found)
{
    found.result = DirectThresholds::Found;
    Datum *elements = nullptr;
    bool *nulls = nullptr;
    int count = 0;
    deconstruct_array(DatumGetArrayTypeP(array), INT4OID, sizeof(int32), true, TYPALIGN_INT, &elements, &nulls,
                      &count);
    for (int i = 0; i < count && found.count < kMaxStoredThresholds; i++)
        if (!nulls[i])
            found.values[found.count++] = DatumGetInt32(elements[i]);
}

/*
 * The account's row of quota.alert_settings, read through its primary key
 * under the latest snapshot, as a cache miss needs it: no SQL, no executor.
 */
DirectThresholds read_thresholds_direct(AccountKey key)
{
    return bridge::guarded_value([&] {
        DirectThresholds found;
        Datum const keys[2] = {key.team, key.resource};
        LatestRow const got = read_row_latest(kAlertSettings, keys, [&found](const TableLayout &layout,
                                                                             TupleTableSlot *tuple) {
            bool isnull = false;
            Datum const array = slot_column(layout, tuple, 2, &isnull);
            if (!isnull)
                take_thresholds(array, found);
        });
        if (got != LatestRow::Found)
            found.result = got == LatestRow::NoTable     ? DirectThresholds::NoTable
                           : got == LatestRow::NotDirect ? DirectThresholds::NotDirect
                                                         : DirectThresholds::Missing;
        else if (found.result != DirectThresholds::Found)
            found.result = DirectThresholds::Missing; /* NULL thresholds: none of its own */
        return found;
    });
}

} // namespace

bool read_thresholds(AccountKey key, std::vector<int32> &out)
{
    out.clear();
    DirectThresholds const direct = read_thresholds_direct(key);
    if (direct.result == DirectThresholds::NoTable)
        return false;
    if (direct.result != DirectThresholds::NotDirect) {
        out.assign(direct.values, direct.values + direct.count);
        return direct.result == DirectThresholds::Found;
    }
    /* Not as installed: SQL, where PostgreSQL applies what was added to the table. */
    Datum values[2] = {key.team, key.resource};
    DirectThresholds read;
    execute_latest(thresholds_sql, values, [&read] {
        read = bridge::guarded_value([] {
            DirectThresholds found;
            found.result = DirectThresholds::Missing;
            bool isnull = false;
            Datum const array = SPI_processed > 0 ? column(1, &isnull) : (Datum) 0;
            if (SPI_processed > 0 && !isnull)
                take_thresholds(array, found);
            return found;
        });
    });
    out.assign(read.values, read.values + read.count);
    return read.result == DirectThresholds::Found;
}

bool any_thresholds()
{
    if (!OidIsValid(alert_settings_relid()))
        return false;
    bool any = false;
    execute_latest(any_thresholds_sql, nullptr, [&any] { any = SPI_processed > 0; });
    return any;
}

void write_thresholds(AccountKey key, const std::vector<int32> &thresholds)
{
    if (thresholds.empty()) {
        Datum values[2] = {key.team, key.resource};
        execute(delete_thresholds_sql, values, nullptr, false);
        announce_change("alert_settings");
        return;
    }
    Datum const array = bridge::guarded_value([&] {
        auto *elements = static_cast<Datum *>(palloc(sizeof(Datum) * thresholds.size()));
        for (size_t i = 0; i < thresholds.size(); i++)
            elements[i] = Int32GetDatum(thresholds[i]);
        return PointerGetDatum(construct_array(elements, static_cast<int>(thresholds.size()), INT4OID, sizeof(int32),
                                               true, TYPALIGN_INT));
    });
    Datum values[3] = {key.team, key.resource, array};
    execute(write_thresholds_sql, values, nullptr, false);
    announce_change("alert_settings");
}

Oid alert_settings_relid()
{
    return bridge::guarded_value([] { return table_oid(kAlertSettings); });
}

bool alerts_installed()
{
    return has_table("events");
}

bool insert_event(AccountKey key, const Event &event, bool notify)
{
    Datum values[9] = {key.team,
                       key.resource,
                       TimestampTzGetDatum(event.window_start),
                       TimestampTzGetDatum(event.resets_at),
                       Int32GetDatum(event.threshold),
                       Int64GetDatum(event.used),
                       Int64GetDatum(event.held),
                       Int64GetDatum(event.credit_limit),
                       TimestampTzGetDatum(event.created_at)};
    char nulls[9] = {' ', ' ', ' ', event.has_resets_at ? ' ' : 'n', ' ', ' ', ' ', ' ', ' '};
    connect();
    bool const keep = in_shard_call(); /* the caller decides whether to notify */
    if (keep)
        execute(keep_event_citus_sql, values, nulls, false);
    else if (distributed())
        execute(notify ? insert_event_citus_sql : store_event_citus_sql, values, nulls, false);
    else
        execute(notify ? insert_event_sql : store_event_sql, values, nulls, false);
    bool const raised = SPI_processed > 0;
    if (keep && raised) {
        bool isnull = false;
        keep_alert_payload(column(1, &isnull));
    }
    finish();
    return raised;
}

} // namespace quota::storage
