/*
 * sql.hpp — how storage/ runs SQL: statements prepared once per backend
 * (SPI_prepare + SPI_keepplan), run through bridge::guarded().  Internal to
 * src/storage/ (store.cpp, slots.cpp).
 *
 * Every statement is schema-qualified down to its operators, so no
 * search_path can plant its own objects.
 */
#pragma once

#include "bridge/guard.hpp"
#include "pg.hpp"

/* Operators are schema-qualified too. */
#define EQ " OPERATOR(pg_catalog.=) "
#define LE " OPERATOR(pg_catalog.<=) "
#define GT " OPERATOR(pg_catalog.>) "
#define GE " OPERATOR(pg_catalog.>=) "

namespace quota::storage {

inline constexpr int kMaxArgs = 12;

/*
 * One prepared statement: its text, its parameter types, and the plan kept
 * for the backend's life.  sql_1_0, when set, is the same statement for a
 * database whose quota is still at version 1.0 (the library is replaced by
 * `make install` before ALTER EXTENSION UPDATE runs); the plan is rebuilt
 * when the schema it was made for changes under a running backend.
 */
struct Statement {
    const char *sql;
    const char *sql_1_0;
    int nargs;
    Oid types[kMaxArgs];
    SPIPlanPtr plan = nullptr;
    bool prepared_for_1_0 = false;
    bool prepared_on_citus = false; /* a plan for each run's values (storage::citus_mode()) */
    bool routed = false;            /* names its team by a parameter: Citus sends it to one shard */
    bool local = false;             /* reads no distributed table (local_statement()): one plan, as on one node */
};

/* A statement that reads no distributed table (Citus's catalog, a shard by its own name): one plan, no pool. */
inline Statement local_statement(Statement statement)
{
    statement.local = true;
    return statement;
}

/*
 * Run a statement (prepared on first use); the rows are in SPI_tuptable.
 * With a snapshot, it reads under that one instead of a fresh one.
 */
void execute(Statement &statement, Datum *values, const char *nulls, bool read_only, Snapshot snapshot = nullptr);

/* Column `number` (from 1) of the first result row. */
Datum column(int number, bool *isnull);

/* Column `number` of result row `row`. */
Datum column_of(uint64 row, int number, bool *isnull);

void connect();
void finish();

/*
 * Run a read-only statement under the latest snapshot (what committed
 * before now, as a cache miss after an invalidation needs), in an SPI
 * connection of its own, and hand the rows to `then()` before the
 * connection ends.
 */
template <typename Then>
void execute_latest(Statement &statement, Datum *values, Then &&then)
{
    connect();
    Snapshot const snapshot = bridge::guarded_value([] { return RegisterSnapshot(GetLatestSnapshot()); });
    execute(statement, values, nullptr, true, snapshot);
    then();
    bridge::guarded([snapshot] { UnregisterSnapshot(snapshot); });
    finish();
}

struct ExpiredHolds;
/* The result of an expiry statement: (credits, count, next expiry). */
ExpiredHolds expired_holds_result();

} // namespace quota::storage
