/*
 * functions.cpp — the SQL-callable entry points (sql/quota--*.sql).
 *
 * Each one is a thin extern "C" function that hands its body to
 * bridge::call(), saying whether it writes (then a read-only transaction
 * or a standby refuses it with 25006 before anything runs); a body reads
 * and checks its arguments (NULL → 22004, bad values → the contract's
 * SQLSTATE), calls the ledger, and builds the result.  Bodies hold only trivially destructible
 * locals, so the PostgreSQL calls they make directly (argument detoasting,
 * building tuples) may raise errors safely.
 */
#include "bridge/entry.hpp"
#include "bridge/error.hpp"
#include "budget/alerts.hpp"
#include "budget/ledger.hpp"
#include "budget/settings.hpp"
#include "budget/tree.hpp"
#include "storage/delegate.hpp"

#include <algorithm>
#include <iterator>
#include <vector>

extern "C" {
PG_MODULE_MAGIC;

void _PG_init(void); // NOLINT(bugprone-reserved-identifier): the name PostgreSQL calls

PG_FUNCTION_INFO_V1(quota_set_account);
PG_FUNCTION_INFO_V1(quota_set_slots);
PG_FUNCTION_INFO_V1(quota_reserve_credit);
PG_FUNCTION_INFO_V1(quota_commit_credit);
PG_FUNCTION_INFO_V1(quota_release_credit);
PG_FUNCTION_INFO_V1(quota_charge_credit);
PG_FUNCTION_INFO_V1(quota_is_team_limited);
PG_FUNCTION_INFO_V1(quota_expire_holds);
PG_FUNCTION_INFO_V1(quota_account_state);
PG_FUNCTION_INFO_V1(quota_window_at);
PG_FUNCTION_INFO_V1(quota_set_alerts);
PG_FUNCTION_INFO_V1(quota_set_parent);
PG_FUNCTION_INFO_V1(quota_set_concurrency);
PG_FUNCTION_INFO_V1(quota_alert_settings_changed);
PG_FUNCTION_INFO_V1(quota_charge_credit_on_shard);
PG_FUNCTION_INFO_V1(quota_reserve_credit_on_shard);
PG_FUNCTION_INFO_V1(quota_commit_credit_on_shard);
PG_FUNCTION_INFO_V1(quota_release_credit_on_shard);
PG_FUNCTION_INFO_V1(quota_hold_team_on_node);
PG_FUNCTION_INFO_V1(quota_commit_credit_on_node);
PG_FUNCTION_INFO_V1(quota_release_credit_on_node);
}

namespace quota::sql {

namespace {

using bridge::Access;
using storage::AccountKey;

void require(FunctionCallInfo fcinfo, int arg, const char *name)
{
    if (PG_ARGISNULL(arg))
        throw Error(ERRCODE_NULL_VALUE_NOT_ALLOWED, format("%s must not be null", name));
}

/* The length of a text argument in bytes, read from its header: a long value is not detoasted to be refused. */
size_t text_bytes(FunctionCallInfo fcinfo, int arg)
{
    return toast_raw_datum_size(PG_GETARG_DATUM(arg)) - VARHDRSZ;
}

/* A text argument that names an account: neither NULL, nor empty, nor longer than kMaxNameBytes. */
Datum name_arg(FunctionCallInfo fcinfo, int arg, const char *name)
{
    require(fcinfo, arg, name);
    check_name(name, text_bytes(fcinfo, arg));
    return PointerGetDatum(PG_GETARG_TEXT_PP(arg));
}

AccountKey key_args(FunctionCallInfo fcinfo, int team_arg, int resource_arg)
{
    return AccountKey{name_arg(fcinfo, team_arg, "team"), name_arg(fcinfo, resource_arg, "resource")};
}

int64 amount_arg(FunctionCallInfo fcinfo, int arg)
{
    require(fcinfo, arg, "amount");
    int64 const amount = PG_GETARG_INT64(arg);
    check_amount(amount);
    return amount;
}

/* quota.grant's columns, in order (a twin's reply adds its alert payloads: storage/delegate.hpp). */
constexpr int kGrantColumns = 8;

void grant_values(const Grant &grant, Datum *values, bool *nulls)
{
    Usage const &usage = grant.usage;
    bool const set_nulls[kGrantColumns] = {false, !grant.has_reservation, false, false, usage.unlimited,
                                           usage.unlimited, !usage.has_period, !grant.has_retry_after};
    std::copy(set_nulls, set_nulls + kGrantColumns, nulls);
    values[0] = BoolGetDatum(grant.granted);
    values[1] = Int64GetDatum(grant.reservation);
    values[2] = Int64GetDatum(usage.used);
    values[3] = Int64GetDatum(usage.held);
    values[4] = Int64GetDatum(usage.credit_limit);
    values[5] = Int64GetDatum(usage.remaining);
    if (grant.has_chain_remaining) {
        nulls[5] = grant.chain_unlimited;
        values[5] = Int64GetDatum(grant.chain_remaining);
    }
    values[6] = TimestampTzGetDatum(usage.resets_at);
    values[7] = Int32GetDatum(grant.retry_after);
}

TupleDesc result_desc(FunctionCallInfo fcinfo)
{
    TupleDesc desc;
    if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
        elog(ERROR, "return type must be a row type");
    return BlessTupleDesc(desc);
}

/* A row of type quota.grant. */
Datum grant_row(FunctionCallInfo fcinfo, const Grant &grant)
{
    Datum values[kGrantColumns];
    bool nulls[kGrantColumns];
    grant_values(grant, values, nulls);
    return HeapTupleGetDatum(heap_form_tuple(result_desc(fcinfo), values, nulls));
}

/* A twin's reply (quota_internal.*_on_shard): quota.grant's columns and the alert payloads of the call, which ends here. */
Datum shard_reply(FunctionCallInfo fcinfo, const Grant &grant)
{
    Datum values[kGrantColumns + 1];
    bool nulls[kGrantColumns + 1];
    grant_values(grant, values, nulls);
    values[kGrantColumns] = storage::leave_shard_call(&nulls[kGrantColumns]);
    return HeapTupleGetDatum(heap_form_tuple(result_desc(fcinfo), values, nulls));
}

/* A twin's settings argument: the caller's (storage/delegate.hpp). */
Datum settings_arg(FunctionCallInfo fcinfo, int arg)
{
    return PG_ARGISNULL(arg) ? (Datum) 0 : PG_GETARG_DATUM(arg);
}

/* set_account(team, credit_limit, resource, period, anchor, unlimited) */
Datum set_account(FunctionCallInfo fcinfo)
{
    AccountKey const key = key_args(fcinfo, 0, 2);
    require(fcinfo, 1, "credit_limit");
    int64 const credit_limit = PG_GETARG_INT64(1);
    check_credit_limit(credit_limit);
    Period period;
    bool const has_period = !PG_ARGISNULL(3);
    if (has_period)
        period = check_interval("period", PG_GETARG_INTERVAL_P(3));
    /* NULL anchor: a new account anchors at now(), an existing one keeps its billing grid. */
    TimestampTz anchor = 0;
    bool const has_anchor = !PG_ARGISNULL(4);
    if (has_anchor) {
        anchor = PG_GETARG_TIMESTAMPTZ(4);
        check_anchor(anchor);
    }
    require(fcinfo, 5, "unlimited");
    ledger::set_account(key, credit_limit, has_period ? &period : nullptr, has_anchor ? &anchor : nullptr,
                        PG_GETARG_BOOL(5));
    PG_RETURN_VOID();
}

/* set_slots(team, slots, resource) */
Datum set_slots(FunctionCallInfo fcinfo)
{
    AccountKey const key = key_args(fcinfo, 0, 2);
    /* NULL: automatic slotting decides (README, "hot accounts"). */
    bool const pinned = !PG_ARGISNULL(1);
    int32 const slots = pinned ? PG_GETARG_INT32(1) : 0;
    if (pinned)
        check_slots(slots);
    ledger::set_slots(key, pinned ? &slots : nullptr);
    PG_RETURN_VOID();
}

/* set_alerts() after its arguments are read: checks them and sets them (owns C++ objects, calls no PostgreSQL). */
void apply_alerts(AccountKey key, const Datum *elements, const bool *nulls, int count)
{
    std::vector<int32> thresholds;
    bool has_null = false;
    for (int i = 0; i < count; i++) {
        has_null = has_null || nulls[i];
        if (!nulls[i] && std::find(thresholds.begin(), thresholds.end(), DatumGetInt32(elements[i])) ==
                             thresholds.end())
            thresholds.push_back(DatumGetInt32(elements[i]));
    }
    alerts::check_thresholds(thresholds, has_null);
    std::sort(thresholds.begin(), thresholds.end());
    ledger::set_alerts(key, thresholds);
}

/* set_alerts(team, thresholds, resource): NULL or '{}' removes the account's own */
Datum set_alerts(FunctionCallInfo fcinfo)
{
    AccountKey const key = key_args(fcinfo, 0, 2);
    Datum *elements = nullptr;
    bool *nulls = nullptr;
    int count = 0;
    if (!PG_ARGISNULL(1))
        deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), INT4OID, sizeof(int32), true, TYPALIGN_INT, &elements, &nulls,
                          &count);
    apply_alerts(key, elements, nulls, count);
    PG_RETURN_VOID();
}

/* set_parent(team, parent, resource): NULL parent detaches */
Datum set_parent(FunctionCallInfo fcinfo)
{
    AccountKey const key = key_args(fcinfo, 0, 2);
    Datum parent = (Datum) 0;
    bool const has_parent = !PG_ARGISNULL(1);
    if (has_parent)
        parent = name_arg(fcinfo, 1, "parent");
    tree::set_parent(key, has_parent ? &parent : nullptr);
    PG_RETURN_VOID();
}

/* set_concurrency(team, max_open_holds, resource): NULL removes the cap */
Datum set_concurrency(FunctionCallInfo fcinfo)
{
    AccountKey const key = key_args(fcinfo, 0, 2);
    int32 cap = 0;
    bool const has_cap = !PG_ARGISNULL(1);
    if (has_cap)
        cap = PG_GETARG_INT32(1);
    tree::set_concurrency(key, has_cap ? &cap : nullptr);
    PG_RETURN_VOID();
}

/*
 * The spending calls.  Each checks its arguments where it is called; on a
 * distributed quota it then sends itself to its team's shard through its
 * twin, quota_internal.<name>_on_shard (storage/delegate.hpp), which runs the same
 * budget code there.
 */

/* The expiry a reserve's hold_for gives (argument `arg`), if set. */
bool expiry_arg(FunctionCallInfo fcinfo, int arg, TimestampTz &expires_at)
{
    if (PG_ARGISNULL(arg))
        return false;
    expires_at = hold_expiry(GetCurrentTransactionStartTimestamp(), check_interval("hold_for", PG_GETARG_INTERVAL_P(arg)));
    return true;
}

bool idempotency_key_arg(FunctionCallInfo fcinfo, int arg, Datum &idempotency_key)
{
    if (PG_ARGISNULL(arg))
        return false;
    check_key(text_bytes(fcinfo, arg));
    idempotency_key = PointerGetDatum(PG_GETARG_TEXT_PP(arg));
    return true;
}

bool commit_amount_arg(FunctionCallInfo fcinfo, int arg, int64 &amount)
{
    if (PG_ARGISNULL(arg))
        return false;
    amount = PG_GETARG_INT64(arg);
    check_commit_amount(amount);
    return true;
}

/* reserve_credit(team, amount, resource, hold_for, idempotency_key) */
Datum reserve_credit(FunctionCallInfo fcinfo)
{
    AccountKey const key = key_args(fcinfo, 0, 2);
    int64 const amount = amount_arg(fcinfo, 1);
    TimestampTz expires_at = 0;
    bool const has_hold_for = expiry_arg(fcinfo, 3, expires_at);
    Datum idempotency_key = (Datum) 0;
    bool const has_key = idempotency_key_arg(fcinfo, 4, idempotency_key);
    if (storage::delegates())
        return grant_row(fcinfo, storage::reserve_on_shard(key, amount, has_hold_for ? &expires_at : nullptr,
                                                           has_key ? &idempotency_key : nullptr));
    Grant const grant = tree::reserve(key, amount, has_hold_for ? &expires_at : nullptr,
                                        has_key ? &idempotency_key : nullptr);
    return grant_row(fcinfo, grant);
}

/* commit_credit(reservation, amount) */
Datum commit_credit(FunctionCallInfo fcinfo)
{
    require(fcinfo, 0, "reservation");
    int64 amount = 0;
    bool const has_amount = commit_amount_arg(fcinfo, 1, amount);
    Grant grant;
    if (storage::delegates() && storage::commit_on_shard(PG_GETARG_INT64(0), has_amount ? &amount : nullptr, grant))
        return grant_row(fcinfo, grant);
    grant = tree::commit(PG_GETARG_INT64(0), has_amount ? &amount : nullptr);
    return grant_row(fcinfo, grant);
}

/* release_credit(reservation) */
Datum release_credit(FunctionCallInfo fcinfo)
{
    require(fcinfo, 0, "reservation");
    bool released = false;
    if (storage::delegates() && storage::release_on_shard(PG_GETARG_INT64(0), released))
        PG_RETURN_BOOL(released);
    PG_RETURN_BOOL(tree::release(PG_GETARG_INT64(0)));
}

/* charge_credit(team, amount, resource, allow_overdraft) */
Datum charge_credit(FunctionCallInfo fcinfo)
{
    AccountKey const key = key_args(fcinfo, 0, 2);
    int64 const amount = amount_arg(fcinfo, 1);
    require(fcinfo, 3, "allow_overdraft");
    if (storage::delegates())
        return grant_row(fcinfo, storage::charge_on_shard(key, amount, PG_GETARG_BOOL(3)));
    return grant_row(fcinfo, tree::charge(key, amount, PG_GETARG_BOOL(3)));
}

/*
 * is_team_limited(team, resource).  Not sent as a call on a distributed
 * quota: it is one read that names its team, which Citus routes to the
 * shard by itself (sent as a call it measured slower: bench/RESULTS-1.2-citus.md).
 */
Datum is_team_limited(FunctionCallInfo fcinfo)
{
    PG_RETURN_BOOL(tree::is_limited(key_args(fcinfo, 0, 1)));
}

/*
 * The twins, on the team's shard (Citus sent them there; internal, not
 * executable by PUBLIC).  Their arguments were checked by the public
 * function; they are checked again all the same.
 */

/* A twin's caller_now argument: its caller's transaction time (microseconds, as PostgreSQL keeps it). */
TimestampTz caller_now_arg(FunctionCallInfo fcinfo, int arg)
{
    require(fcinfo, arg, "caller_now");
    return static_cast<TimestampTz>(PG_GETARG_INT64(arg));
}

/* charge_credit_on_shard(team, amount, resource, allow_overdraft, caller_now, settings) */
Datum charge_credit_on_shard(FunctionCallInfo fcinfo)
{
    AccountKey const key = key_args(fcinfo, 0, 2);
    int64 const amount = amount_arg(fcinfo, 1);
    require(fcinfo, 3, "allow_overdraft");
    storage::enter_shard_call(key.team, caller_now_arg(fcinfo, 4), settings_arg(fcinfo, 5));
    return shard_reply(fcinfo, tree::charge(key, amount, PG_GETARG_BOOL(3)));
}

/* reserve_credit_on_shard(team, amount, resource, expires_at, idempotency_key, caller_now, settings) */
Datum reserve_credit_on_shard(FunctionCallInfo fcinfo)
{
    AccountKey const key = key_args(fcinfo, 0, 2);
    int64 const amount = amount_arg(fcinfo, 1);
    bool const has_expiry = !PG_ARGISNULL(3);
    TimestampTz const expires_at = has_expiry ? static_cast<TimestampTz>(PG_GETARG_INT64(3)) : 0;
    Datum idempotency_key = (Datum) 0;
    bool const has_key = idempotency_key_arg(fcinfo, 4, idempotency_key);
    storage::enter_shard_call(key.team, caller_now_arg(fcinfo, 5), settings_arg(fcinfo, 6));
    Grant const grant = tree::reserve(key, amount, has_expiry ? &expires_at : nullptr,
                                        has_key ? &idempotency_key : nullptr);
    return shard_reply(fcinfo, grant);
}

/* commit_credit_on_shard(team, reservation, amount, caller_now, settings) */
Datum commit_credit_on_shard(FunctionCallInfo fcinfo)
{
    Datum const team = name_arg(fcinfo, 0, "team");
    require(fcinfo, 1, "reservation");
    int64 amount = 0;
    bool const has_amount = commit_amount_arg(fcinfo, 2, amount);
    storage::enter_shard_call(team, caller_now_arg(fcinfo, 3), settings_arg(fcinfo, 4));
    return shard_reply(fcinfo, tree::commit(PG_GETARG_INT64(1), has_amount ? &amount : nullptr));
}

/* release_credit_on_shard(team, reservation, caller_now, settings) */
Datum release_credit_on_shard(FunctionCallInfo fcinfo)
{
    Datum const team = name_arg(fcinfo, 0, "team");
    require(fcinfo, 1, "reservation");
    storage::enter_shard_call(team, caller_now_arg(fcinfo, 2), settings_arg(fcinfo, 3));
    bool const released = tree::release(PG_GETARG_INT64(1));
    bool isnull = false;
    (void) storage::leave_shard_call(&isnull);
    PG_RETURN_BOOL(released);
}

/*
 * commit_credit_on_node(route, reservation, amount, caller_now, settings):
 * commit in one hop, on the node that made the reservation
 * (storage/delegate.hpp); a twin's reply and here = true, or a row of
 * NULLs and here = false when not settled here.
 */
Datum commit_credit_on_node(FunctionCallInfo fcinfo)
{
    require(fcinfo, 1, "reservation");
    int64 amount = 0;
    bool const has_amount = commit_amount_arg(fcinfo, 2, amount);
    Datum values[kGrantColumns + 2] = {};
    bool nulls[kGrantColumns + 2] = {};
    Datum const route = name_arg(fcinfo, 0, "route");
    if (!storage::enter_route_call(route, PG_GETARG_INT64(1), caller_now_arg(fcinfo, 3), settings_arg(fcinfo, 4))) {
        std::fill(std::begin(nulls), std::end(nulls), true);
        values[kGrantColumns + 1] = BoolGetDatum(false);
        nulls[kGrantColumns + 1] = false;
        return HeapTupleGetDatum(heap_form_tuple(result_desc(fcinfo), values, nulls));
    }
    Grant const grant = tree::commit(PG_GETARG_INT64(1), has_amount ? &amount : nullptr);
    grant_values(grant, values, nulls);
    values[kGrantColumns] = storage::leave_shard_call(&nulls[kGrantColumns]);
    values[kGrantColumns + 1] = BoolGetDatum(true);
    nulls[kGrantColumns + 1] = false;
    return HeapTupleGetDatum(heap_form_tuple(result_desc(fcinfo), values, nulls));
}

/* release_credit_on_node(route, reservation, caller_now, settings): released, or NULL when not settled here */
Datum release_credit_on_node(FunctionCallInfo fcinfo)
{
    Datum const route = name_arg(fcinfo, 0, "route");
    require(fcinfo, 1, "reservation");
    if (!storage::enter_route_call(route, PG_GETARG_INT64(1), caller_now_arg(fcinfo, 2), settings_arg(fcinfo, 3)))
        PG_RETURN_NULL();
    bool const released = tree::release(PG_GETARG_INT64(1));
    bool isnull = false;
    (void) storage::leave_shard_call(&isnull);
    PG_RETURN_BOOL(released);
}

/* hold_team_on_node(route, reservation): the team of a reservation made on this node (storage/delegate.hpp) */
Datum hold_team_on_node(FunctionCallInfo fcinfo)
{
    require(fcinfo, 1, "reservation");
    Datum team = (Datum) 0;
    bool through_parents = false;
    bool const found = storage::hold_team_here(PG_GETARG_INT64(1), team, through_parents);
    Datum values[2] = {team, BoolGetDatum(through_parents)};
    bool nulls[2] = {!found, !found};
    return HeapTupleGetDatum(heap_form_tuple(result_desc(fcinfo), values, nulls));
}

/* expire_holds() */
Datum expire_holds(FunctionCallInfo fcinfo)
{
    (void) fcinfo;
    PG_RETURN_INT64(ledger::expire_holds());
}

/*
 * _account_state(account quota.accounts, expired_held bigint, slots_window timestamptz,
 *                slots_used bigint, slots_held bigint): one row of the view quota.usage.
 * Version 1.0 of the view passes the first two only.
 */
Datum account_state(FunctionCallInfo fcinfo)
{
    require(fcinfo, 0, "account");
    bool const with_slots = PG_NARGS() >= 5;
    Account account = storage::account_from_row(PG_GETARG_HEAPTUPLEHEADER(0), with_slots);
    int64 const expired_held = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1);
    if (with_slots) {
        roll_over(account, GetCurrentTransactionStartTimestamp());
        add_slots(account, !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_TIMESTAMPTZ(2),
                  PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3), PG_ARGISNULL(4) ? 0 : PG_GETARG_INT64(4));
    }
    Usage const usage = ledger::current_usage(account, expired_held, GetCurrentTransactionStartTimestamp());

    TupleDesc desc;
    if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
        elog(ERROR, "return type must be a row type");
    desc = BlessTupleDesc(desc);
    Datum values[7] = {Int64GetDatum(usage.credit_limit), Int64GetDatum(usage.used),
                       Int64GetDatum(usage.held),        Int64GetDatum(usage.remaining),
                       TimestampTzGetDatum(usage.window_start), TimestampTzGetDatum(usage.resets_at),
                       BoolGetDatum(usage.limited)};
    bool nulls[7] = {usage.unlimited, false, false, usage.unlimited, false, !usage.has_period, false};
    return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/* window_at(anchor, period, at): the budget window that contains `at` */
Datum window_at(FunctionCallInfo fcinfo)
{
    require(fcinfo, 0, "anchor");
    require(fcinfo, 1, "period");
    require(fcinfo, 2, "at");
    TimestampTz const anchor = PG_GETARG_TIMESTAMPTZ(0);
    check_anchor(anchor);
    Period const period = check_interval("period", PG_GETARG_INTERVAL_P(1));
    TimestampTz const at = PG_GETARG_TIMESTAMPTZ(2);
    if (TIMESTAMP_NOT_FINITE(at))
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, "invalid instant", "The instant must be a finite timestamp.");
    Window const window = window_or_error(anchor, period, at);

    TupleDesc desc;
    if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
        elog(ERROR, "return type must be a row type");
    desc = BlessTupleDesc(desc);
    Datum values[2] = {TimestampTzGetDatum(window.start), TimestampTzGetDatum(window.end)};
    bool nulls[2] = {false, false};
    return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

} // namespace

} // namespace quota::sql

namespace {

/* A relcache invalidation: the alert thresholds this backend cached may be stale (budget/alerts.hpp). */
void relcache_changed(Datum, Oid relation)
{
    quota::alerts::relcache_changed(relation);
    quota::tree::relcache_changed(relation);
}

} // namespace

void _PG_init(void) // NOLINT(bugprone-reserved-identifier)
{
    quota::settings::define();
    CacheRegisterRelcacheCallback(relcache_changed, (Datum) 0);
}

/*
 * The statement trigger of quota.alert_settings: tell every backend that
 * its cached thresholds are stale (sent when the transaction commits).
 * Plain C: it only queues an invalidation.
 */
Datum quota_alert_settings_changed(PG_FUNCTION_ARGS)
{
    if (!CALLED_AS_TRIGGER(fcinfo))
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("quota._alert_settings_changed() must be called as a trigger")));
    Relation const changed = reinterpret_cast<TriggerData *>(fcinfo->context)->tg_relation;
    CacheInvalidateRelcache(changed);
    /* A Citus shard of quota.links or quota.alert_settings: the backends' caches follow the table itself. */
    char const *name = RelationGetRelationName(changed);
    for (char const *table : {"links", "alert_settings"}) {
        size_t const length = strlen(table);
        if (strncmp(name, table, length) == 0 && name[length] == '_') {
            Oid const relation = get_relname_relid(table, RelationGetNamespace(changed));
            if (OidIsValid(relation))
                CacheInvalidateRelcacheByRelid(relation);
        }
    }
    return PointerGetDatum(nullptr);
}

using quota::bridge::Access;
using quota::bridge::call;
using quota::bridge::Effect;

/* The extern "C" symbol quota_<name> of sql/quota--*.sql: quota::sql::<name> run through the bridge. */
#define QUOTA_FUNCTION(name, access, effect)                                                          \
    Datum quota_##name(PG_FUNCTION_ARGS)                                                              \
    {                                                                                                 \
        return call(fcinfo, quota::sql::name, Access::access, Effect::effect, #name "()");            \
    }

QUOTA_FUNCTION(set_account, Owner, Writes)
QUOTA_FUNCTION(set_slots, Owner, Writes)
QUOTA_FUNCTION(set_alerts, Owner, Writes)
QUOTA_FUNCTION(set_parent, Owner, Writes)
QUOTA_FUNCTION(set_concurrency, Owner, Writes)
QUOTA_FUNCTION(reserve_credit, Owner, Writes)
QUOTA_FUNCTION(commit_credit, Owner, Writes)
QUOTA_FUNCTION(release_credit, Owner, Writes)
QUOTA_FUNCTION(charge_credit, Owner, Writes)
QUOTA_FUNCTION(expire_holds, Owner, Writes)
QUOTA_FUNCTION(is_team_limited, Owner, Reads)
QUOTA_FUNCTION(charge_credit_on_shard, Owner, Writes)
QUOTA_FUNCTION(reserve_credit_on_shard, Owner, Writes)
QUOTA_FUNCTION(commit_credit_on_shard, Owner, Writes)
QUOTA_FUNCTION(release_credit_on_shard, Owner, Writes)
QUOTA_FUNCTION(hold_team_on_node, Owner, Reads)
QUOTA_FUNCTION(commit_credit_on_node, Owner, Writes)
QUOTA_FUNCTION(release_credit_on_node, Owner, Writes)
QUOTA_FUNCTION(window_at, Caller, Reads)
QUOTA_FUNCTION(account_state, Caller, Reads)
