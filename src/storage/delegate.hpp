/*
 * delegate.hpp — on a distributed quota (quota.distribute()), a spending
 * call runs on the worker that holds its team, in one hop.
 *
 * The public function checks its arguments where it is called (so a NULL
 * team is refused there with 22004: Citus 13.0.5 crashes planning a
 * delegated call whose distribution argument is NULL), then calls its twin
 * quota_internal.<name>_on_shard(team, ...), in a schema PUBLIC cannot use
 * (Citus plans the call before EXECUTE is checked).  Citus delegates the
 * twin by its team (create_distributed_function, force_delegation) inside
 * the caller's transaction, and the twin runs the call as one node would,
 * on its team's shard, at the caller's transaction time and with the
 * caller's settings.  The twin keeps the alert payloads it raises and
 * sends them back with its reply; the public function notifies them, so
 * LISTEN works on the node the application calls, on commit only, as on
 * one node.
 *
 * commit_credit() and release_credit() are given only a reservation: the
 * caller sends the call to the node that made it (its id carries that
 * node's group), which settles it on its team's shards themselves when it
 * has it (one hop); otherwise the caller asks every shard for its team and
 * sends the call to that team's shard.
 */
#pragma once

#include "storage/store.hpp"

namespace quota::storage {

/*
 * A public spending call begins (no twin is under way in it: one that
 * failed ended with its (sub)transaction): true when it goes to its team's
 * shard, that is when quota is distributed.
 */
bool delegates();

/*
 * The twin's side: a call on its team's shard, run at the caller's
 * transaction time and with the caller's settings (`settings`, text[], as
 * the caller sent them; 0: none sent), whose alert payloads are kept for
 * the reply.
 */
void enter_shard_call(Datum team, TimestampTz caller_now, Datum settings);

/*
 * The node side of commit and release in one hop, sent by `route`, a value
 * of the shard the reservation's id names (below): enter a call on that
 * shard, bound (table.hpp), when the hold is in it; false: not settled
 * here, nothing entered (the caller finds the team and sends the call by
 * it).
 */
bool enter_route_call(Datum route, int64 reservation, TimestampTz caller_now, Datum settings);

/*
 * Reservation (and event) ids on a distributed quota (quota._cluster_id):
 * bits 52-62 the Citus group of the node that made it (ids drawn from each
 * node's own sequence never meet, also when a shard moves), bits 44-51 the
 * bucket of its team's hash (the top 8 bits of hashtext(team) + 2^31:
 * which shard holds the team), bits 0-43 the node's sequence.  The
 * coordinator's ids made before quota.distribute() are the plain sequence.
 */
inline constexpr int kBuckets = 256;
inline int32 id_group(int64 id)
{
    return static_cast<int32>((id >> 52) & 2047);
}
inline int id_bucket(int64 id)
{
    return static_cast<int>((id >> 44) & (kBuckets - 1));
}
inline int bucket_of_hash(int32 hash)
{
    return static_cast<int>((static_cast<int64>(hash) + 2147483648LL) >> 24);
}

/* Inside a twin: the caller's transaction time, which the call runs at (budget/ledger.cpp). */
bool caller_now(TimestampTz &now);
/* The payloads kept, as text[] (isnull when none), and the end of the twin's call. */
Datum leave_shard_call(bool *isnull);

/*
 * Inside a twin (storage's own use): its team, to look its holds up on the
 * shard, and where an alert payload goes instead of NOTIFY.
 */
bool in_shard_call();
Datum shard_call_team();
void keep_alert_payload(Datum payload);

/* The caller's side: the call sent to its team's shard, its reply, and the alerts it raised notified here. */
Grant charge_on_shard(AccountKey key, int64 amount, bool allow_overdraft);
Grant reserve_on_shard(AccountKey key, int64 amount, const TimestampTz *expires_at, const Datum *idempotency_key);
/*
 * False when the reservation is not to be sent (no shard has it, or it was
 * made through parents before quota.distribute()): the caller runs it
 * where it is, which reports it as one node would.
 */
bool commit_on_shard(int64 reservation, const int64 *amount, Grant &grant);
bool release_on_shard(int64 reservation, bool &released);

/*
 * On the node a reservation's id names: its team (copied to the caller's
 * memory), and whether it was made through parents; false when none of
 * this node's shards has it.
 */
bool hold_team_here(int64 reservation, Datum &team, bool &through_parents);

} // namespace quota::storage
