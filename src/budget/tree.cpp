/*
 * tree.cpp — parent budgets and concurrency caps (see tree.hpp).
 */
#include "budget/tree.hpp"

#include "bridge/error.hpp"
#include "bridge/guard.hpp"
#include "bridge/subtransaction.hpp"
#include "budget/ledger.hpp"
#include "budget/locks.hpp"
#include "storage/table_cache.hpp"

#include <algorithm>
#include <cstring>

namespace quota::tree {

namespace {

using storage::Links;

/* quota.links, per backend (storage/table_cache.hpp); its generation() is compared before and after an account's lock. */
storage::TableCache<Links> cache(storage::links_relid, storage::any_links);

/* The account's links as of now, and the generation they were read in. */
struct Read {
    Links links;
    uint64 generation = 0;
};

Read links_of(AccountKey key)
{
    cache.refresh();
    Read read;
    read.generation = cache.generation();
    if (cache.any())
        read.links = cache.get(key, [](AccountKey at, Links &links) { storage::read_links(at, links); });
    return read;
}

bool same(const Links &a, const Links &b)
{
    return a.has_parent == b.has_parent && a.has_cap == b.has_cap && (!a.has_cap || a.cap == b.cap) &&
           (!a.has_parent ||
            (a.parent_length == b.parent_length && std::memcmp(a.parent, b.parent, a.parent_length) == 0));
}

/*
 * With the account's lock held (its step is done): true when quota.links
 * changed since `read` and this account's links with it, so the step used
 * stale ones.  A set_parent() or set_concurrency() on it holds the whole
 * account until it commits, and its invalidation is queued before its locks
 * go, so the check after the lock sees every change the lock waited for.
 */
bool changed_since(AccountKey key, const Read &read)
{
    bridge::guarded([] { AcceptInvalidationMessages(); });
    if (cache.generation() == read.generation)
        return false;
    Links now;
    storage::read_links(key, now);
    return !same(now, read.links);
}

[[noreturn]] void changed_during_call(AccountKey key)
{
    throw Error(ERRCODE_T_R_SERIALIZATION_FAILURE,
                format("quota account \"%s\" for resource \"%s\" got a new parent or concurrency cap during this call",
                       storage::team_name(key), storage::resource_name(key)),
                "quota.set_parent() or quota.set_concurrency() changed it after the call had read it.",
                "Retry the transaction.");
}

/*
 * The least remaining over a chain (unlimited accounts leave it alone), and
 * for a denial the account of the chain that will turn the call away
 * longest: one that cannot cover `amount` and never resets, else the one
 * whose window ends last (`blocked`, `resets_at`).
 */
struct Least {
    bool unlimited = true;
    int64 remaining = PG_INT64_MAX;
    int64 amount = 0;
    bool blocked = false;
    bool forever = false;
    TimestampTz resets_at = 0;

    void add(const Usage &usage)
    {
        if (usage.unlimited)
            return;
        unlimited = false;
        remaining = std::min(remaining, usage.remaining);
        if (usage.remaining >= amount)
            return;
        blocked = true;
        if (!usage.has_period)
            forever = true;
        else
            resets_at = std::max(resets_at, usage.resets_at);
    }

    /*
     * A denial's resets_at and retry_after: the denier's (`grant`), or the
     * account that blocks the call longer, so that a client that waits
     * retry_after seconds is not turned away by another account of the
     * chain at once.
     */
    void worst_into(Grant &grant, TimestampTz now) const
    {
        if (!blocked)
            return;
        if (forever) {
            grant.usage.has_period = false;
            grant.has_retry_after = false;
            grant.retry_after = 0;
            return;
        }
        if (!grant.has_retry_after && grant.usage.has_period)
            return; /* the denier itself never frees up by waiting (a cap of 0) */
        TimestampTz const denier_until =
            grant.has_retry_after ? now + static_cast<int64>(grant.retry_after) * USECS_PER_SEC : 0;
        if (grant.has_retry_after && resets_at <= denier_until)
            return;
        if (!grant.has_retry_after && !grant.usage.has_period)
            return; /* the denier never resets: nothing waits longer */
        grant.usage.has_period = true;
        grant.usage.resets_at = resets_at;
        grant.has_retry_after = true;
        grant.retry_after = retry_after_seconds(resets_at, now);
    }

    void into(Grant &grant) const
    {
        grant.has_chain_remaining = true;
        grant.chain_unlimited = unlimited;
        grant.chain_remaining = unlimited ? 0 : remaining;
    }
};

AccountKey parent_key(const Links &links, AccountKey child)
{
    Datum const team = bridge::guarded_value([&links] {
        return PointerGetDatum(cstring_to_text_with_len(links.parent, static_cast<int>(links.parent_length)));
    });
    return AccountKey{team, child.resource};
}

/* Readers (denials, is_team_limited): the ancestors from `links` up, read without locks, into `least`. */
bool any_limited_above(const Links &from, AccountKey child, Least &least)
{
    bool limited = false;
    Links links = from;
    AccountKey key = child;
    for (int32 depth = 1; links.has_parent && depth < kMaxChain; depth++) {
        key = parent_key(links, key);
        Usage usage;
        if (!ledger::peek(key, usage))
            break; /* deleted by hand: nothing to read */
        least.add(usage);
        limited = limited || usage.limited;
        links = links_of(key).links;
    }
    return limited;
}

/* Puts back the origin of the holds insert_hold() makes when the step is over, however it ends. */
struct OriginScope {
    OriginScope(int64 origin, int64 own_id) { storage::set_hold_origin(origin, own_id); }
    ~OriginScope() { storage::set_hold_origin(0); }
    OriginScope(const OriginScope &) = delete;
    OriginScope &operator=(const OriginScope &) = delete;
};

[[noreturn]] void chain_too_long(AccountKey key)
{
    throw Error(ERRCODE_INVALID_PARAMETER_VALUE,
                format("the parents of quota account \"%s\" for resource \"%s\" form a chain of more than %d accounts",
                       storage::team_name(key), storage::resource_name(key), kMaxChain),
                "quota.links was changed by hand.", "Fix the chain with quota.set_parent().");
}

/* An account's chain as the cache shows it: the account first, its root last. */
struct Chain {
    int32 count = 0;
    AccountKey keys[kMaxChain];
    Read reads[kMaxChain];
};

Chain chain_of(AccountKey key, const Read &first)
{
    Chain chain;
    chain.keys[0] = key;
    chain.reads[0] = first;
    chain.count = 1;
    while (chain.reads[chain.count - 1].links.has_parent) {
        if (chain.count == kMaxChain)
            chain_too_long(key);
        chain.keys[chain.count] = parent_key(chain.reads[chain.count - 1].links, chain.keys[chain.count - 1]);
        chain.reads[chain.count] = links_of(chain.keys[chain.count]);
        chain.count++;
    }
    return chain;
}

int32 cap_of(const Read &read)
{
    return read.links.has_cap ? read.links.cap : -1;
}

/* Every account of the chain read now, without locks, into `least`; the account's own usage into `own`. */
void peek_chain(const Chain &chain, Least &least, Usage &own)
{
    for (int32 i = 0; i < chain.count; i++) {
        Usage usage;
        if (!ledger::peek(chain.keys[i], usage))
            continue; /* deleted by hand: nothing to read */
        least.add(usage);
        if (i == 0)
            own = usage;
    }
}

/*
 * A spend on an account with a parent.  `step(key, cap, is_child)` is the
 * ledger's call on one account.  The canonical order is root first: an
 * ancestor before any of its descendants, so calls on siblings meet first
 * at their common ancestors, and a transaction that calls several
 * accounts in one order locks every ancestor before the accounts under
 * it.  All inside a subtransaction: granted by every account, it is
 * released; denied by one, or an idempotent retry that found its first
 * reservation, it rolls back (nothing changed anywhere); an account whose
 * links changed before its lock was taken makes the call start again with
 * the chain as it is now (a few times, then 40001).
 *
 * Own account first.  Root first, a call that waits for its team's row
 * (another call of that team has it) waits holding a part of the parent
 * (one of its slots), which the team's other calls and the siblings' then
 * wait for in turn.  So a call that may (may_go_own_first(): nothing of
 * any account held yet, READ COMMITTED, no capped ancestor, no ancestor
 * whose committed state already denies it) first takes its own account —
 * waiting if it must, holding no other account's lock — and then the
 * ancestors upwards *impatiently* (storage::Impatience: a row lock of an
 * account or slot it would wait for throws WouldWait instead).  Granted
 * by every account, that is the call.  A lock it would have waited for, a
 * denial, a replay, a changed link or an error of the extension's own
 * rolls the subtransaction back, and the call runs again root first, with
 * waits, so such replies are the canonical order's (PostgreSQL's own
 * errors — a cancel, lock_timeout, 40001 — go to the caller as they are).
 * No deadlock comes of it through the accounts' row locks: such a call
 * waits for another account's row only while it holds none, and once its
 * own account is done it waits for no other account's row; when its call
 * is over it holds what the canonical call would have held.  (Waits that
 * are not an account's row — a quota side table's relation lock, a
 * unique-index insert racing another — are as in any call.)  The
 * ancestors' parts of a reservation get their ids drawn root first before
 * the steps, so that settling (ancestor_holds(), by id) still goes root
 * first.
 */
enum class Kind { Reserve, Charge, Overdraft };
enum class Outcome { Granted, Denied, Replayed, Changed, WouldWait };

/*
 * A keyed retry of a reserve: when the account already has a hold with
 * this idempotency key (committed, or this transaction's), the reply to the
 * retry — that reservation, the account as it is now, the least remaining
 * over the chain — read without locks and without asking the ancestors
 * again (they held for it when it was made, and may be out of credits by
 * now).  False when there is none: the call goes along the chain.
 */
bool replay(AccountKey key, const Datum *idempotency_key, Grant &out)
{
    if (idempotency_key == nullptr)
        return false;
    storage::connect();
    storage::Hold earlier;
    bool const found = storage::find_hold(key, *idempotency_key, earlier);
    int64 const id = earlier.id;
    storage::finish();
    if (!found)
        return false;
    Chain const chain = chain_of(key, links_of(key));
    Least least;
    Usage own;
    peek_chain(chain, least, own);
    out = Grant{};
    out.granted = true;
    out.has_reservation = true;
    out.reservation = id;
    out.usage = own;
    least.into(out);
    return true;
}

/* Nothing of any account held yet, in READ COMMITTED: where a spend or settle may take its own account first. */
bool holds_nothing_read_committed()
{
    return !locks::holds_any() && !bridge::guarded_value([] { return IsolationUsesXactSnapshot(); });
}

/* Undo a subtransaction of the extension's own: nothing done in it stays, and the lock table is as before it. */
void roll_back(const bridge::Subtransaction &outer, const locks::SavedTable &saved)
{
    bridge::rollback_subtransaction(outer);
    locks::restore(saved);
}

/* The same after a PostgreSQL error inside it: the error, copied out first, goes on to the caller. */
[[noreturn]] void roll_back_and_throw(const PgError &error, const bridge::Subtransaction &outer,
                                      const locks::SavedTable &saved)
{
    ErrorData *const kept = bridge::error_outside(error.data(), outer);
    roll_back(outer, saved);
    throw PgError(kept);
}

/*
 * Whether the call may take its own account first: the transaction holds
 * no quota lock; READ COMMITTED (where a denial from the committed state
 * is exact); no ancestor has a concurrency cap (a capped account is
 * decided on its row: it would deny only after the call took its own);
 * and no ancestor's committed state already denies it (then the call goes
 * root first, and the denier turns it away with no lock and no write, as
 * for one account, instead of the call queueing for its own account
 * first).
 */
bool may_go_own_first(const Chain &chain, int64 amount, Kind kind)
{
    if (!holds_nothing_read_committed())
        return false;
    for (int32 i = 1; i < chain.count; i++)
        if (cap_of(chain.reads[i]) >= 0)
            return false;
    if (kind == Kind::Overdraft)
        return true;
    for (int32 i = chain.count - 1; i > 0; i--)
        if (ledger::denies_now(chain.keys[i], amount))
            return false;
    return true;
}

template <typename Step>
Grant spend_chain(AccountKey key, const Read &first, int64 amount, Kind kind, const Step &step,
                  const Datum *idempotency_key)
{
    constexpr int kAttempts = 4;
    TimestampTz const now = GetCurrentTransactionStartTimestamp();
    Grant replayed;
    if (replay(key, idempotency_key, replayed))
        return replayed;
    bool tried_own_first = false;
    for (int attempt = 1;;) {
        Chain const chain = chain_of(key, attempt == 1 ? first : links_of(key));
        bool const own_first = !tried_own_first && may_go_own_first(chain, amount, kind);
        tried_own_first = true;
        locks::SavedTable const saved = locks::save();
        locks::start_call();
        bridge::Subtransaction const outer = bridge::begin_subtransaction();
        Outcome outcome = Outcome::Granted;
        Grant head;
        Grant denial;
        int32 changed_at = 0;
        Least least;
        least.amount = amount;
        try {
            int64 const reservation = kind == Kind::Reserve ? storage::next_hold_id() : 0;
            int64 part_ids[kMaxChain] = {};
            if (own_first && kind == Kind::Reserve)
                for (int32 i = chain.count - 1; i > 0; i--)
                    part_ids[i] = storage::next_hold_id(); /* root's first: settled in id order */
            for (int32 n = 0; n < chain.count; n++) {
                int32 const i = own_first ? n : chain.count - 1 - n;
                Grant grant;
                {
                    storage::Impatience const impatient(own_first && i > 0);
                    OriginScope const origin(reservation, i == 0 ? reservation : part_ids[i]);
                    grant = step(chain.keys[i], cap_of(chain.reads[i]), i == 0);
                }
                if (changed_since(chain.keys[i], chain.reads[i])) {
                    outcome = Outcome::Changed;
                    changed_at = i;
                    break;
                }
                locks::in_call(locks::account_id(chain.keys[i]));
                least.add(grant.usage);
                if (!grant.granted) {
                    outcome = Outcome::Denied;
                    denial = grant;
                    if (i == 0)
                        head = grant;
                    break;
                }
                if (i == 0) {
                    head = grant;
                    /* A keyed retry answered with its first reservation: the holds made for it go. */
                    if (kind == Kind::Reserve && grant.reservation != reservation) {
                        outcome = Outcome::Replayed;
                        break;
                    }
                }
            }
        } catch (const storage::WouldWait &) {
            outcome = Outcome::WouldWait; /* own account first only; the rollback below gives back what it took */
        } catch (const PgError &error) {
            roll_back_and_throw(error, outer, saved);
        } catch (...) {
            roll_back(outer, saved);
            /*
             * The extension's own error (an overflow, say) in the own-first
             * order: the canonical order may answer otherwise (an ancestor
             * that denies first), so it decides.  PostgreSQL's errors
             * (cancel, timeouts, serialization) go to the caller as they are.
             */
            if (!own_first)
                throw;
            continue;
        }
        if (outcome == Outcome::Granted) {
            bridge::release_subtransaction(outer);
            least.into(head);
            return head;
        }
        roll_back(outer, saved); /* nothing of this call stays, on any account */
        if (own_first) {
            if (outcome == Outcome::Changed)
                attempt++; /* read the links again */
            continue; /* again, root first: every reply but a grant is the canonical order's */
        }
        if (outcome == Outcome::Changed) {
            if (attempt++ < kAttempts)
                continue;
            changed_during_call(chain.keys[changed_at]);
        }
        /* Denied while a call with the same key held on the chain and committed meanwhile: its retry. */
        if (outcome == Outcome::Denied && replay(key, idempotency_key, replayed))
            return replayed;
        /* Denied or replayed: the account's reply as it is now, the least remaining over the chain. */
        Least now_least;
        now_least.amount = amount;
        Usage own = head.usage;
        peek_chain(chain, now_least, own);
        if (outcome == Outcome::Replayed) {
            head.usage = own;
            now_least.into(head);
            return head;
        }
        Grant reply = denial;
        reply.granted = false;
        reply.has_reservation = false;
        reply.reservation = 0;
        reply.usage = own;
        reply.usage.has_period = denial.usage.has_period; /* the denier's window and retry_after */
        reply.usage.resets_at = denial.usage.resets_at;
        now_least.add(denial.usage);
        now_least.worst_into(reply, now);
        now_least.into(reply);
        return reply;
    }
}

/* A spend: straight to the ledger for an account without a parent, along the chain otherwise. */
template <typename Step>
Grant spend(AccountKey key, int64 amount, Kind kind, const Step &step, const Datum *idempotency_key = nullptr)
{
    locks::start_call();
    Read const first = links_of(key);
    if (first.links.has_parent)
        return spend_chain(key, first, amount, kind, step, idempotency_key);
    Grant grant = step(key, cap_of(first), true); /* one account: a denial changes nothing */
    if (changed_since(key, first))
        changed_during_call(key); /* a parent or cap came in between: the step did not use it */
    return grant;
}

} // namespace

Grant reserve(AccountKey key, int64 amount, const TimestampTz *expires_at, const Datum *idempotency_key)
{
    return spend(key, amount, Kind::Reserve, [&](AccountKey at, int32 cap, bool child) {
        /* The idempotency key belongs to the child's hold: the ancestors' parts have none. */
        return ledger::reserve(at, amount, expires_at, child ? idempotency_key : nullptr, cap);
    }, idempotency_key);
}

Grant charge(AccountKey key, int64 amount, bool allow_overdraft)
{
    return spend(key, amount, allow_overdraft ? Kind::Overdraft : Kind::Charge, [&](AccountKey at, int32 cap, bool) {
        return ledger::charge(at, amount, allow_overdraft, cap >= 0);
    });
}

namespace {

/* Each ancestor's part of a hold made through parents, in id order (root first: drawn so), settled by `one`. */
template <typename One>
void settle_parts(int64 reservation, const One &one)
{
    for (int64 part : storage::ancestor_holds(reservation)) {
        ledger::Settle as_part;
        as_part.part = true;
        one(part, as_part);
        locks::in_call(as_part.account);
    }
}

/*
 * Settling a hold made through parents, own hold first, as a spend goes
 * (see spend_chain): in a transaction that holds no quota lock yet, in
 * READ COMMITTED, on one node, when some account has links and this hold
 * has parts (read first, without a lock: a hold's origin never changes),
 * the child's hold is settled first (`child(settle)`, waiting for its
 * account if it must), then the ancestors' parts impatiently
 * (`parts(result)`), all inside a subtransaction begun outside any SPI
 * connection of the settle's.  A lock it would wait for, or an error of
 * quota's own, rolls the subtransaction back: false, and the caller
 * settles in the canonical order (the parts first, root first).
 * PostgreSQL's errors go to the caller.  A database where no account has
 * links settles as it always did, with no read and no subtransaction.
 */
template <typename R, typename Child, typename Parts>
bool own_hold_first(int64 reservation, R &out, const Child &child, const Parts &parts)
{
    if (storage::distributed() || !holds_nothing_read_committed())
        return false;
    cache.refresh();
    if (!cache.any())
        return false;
    storage::connect();
    storage::Hold hold;
    bool const has_parts = storage::read_hold(reservation, hold) && hold.origin != 0 && hold.origin == hold.id;
    storage::finish();
    if (!has_parts)
        return false;
    locks::SavedTable const saved = locks::save();
    bridge::Subtransaction const outer = bridge::begin_subtransaction();
    try {
        ledger::Settle settle; /* no before_lock: the parts come after the child's hold */
        R result = child(&settle);
        locks::in_call(settle.account);
        {
            storage::Impatience const impatient(true);
            parts(result);
        }
        bridge::release_subtransaction(outer);
        out = result;
        return true;
    } catch (const PgError &error) {
        roll_back_and_throw(error, outer, saved);
    } catch (...) {
        /* WouldWait, or quota's own error: the canonical order decides */
    }
    roll_back(outer, saved);
    return false;
}

} // namespace

Grant commit(int64 reservation, const int64 *amount)
{
    locks::start_call();
    auto const commit_parts = [reservation, amount](Least &least) {
        settle_parts(reservation, [&](int64 part, ledger::Settle &as_part) {
            least.add(ledger::commit(part, amount, &as_part).usage);
        });
    };
    Grant grant;
    if (own_hold_first(
            reservation, grant, [&](ledger::Settle *settle) { return ledger::commit(reservation, amount, settle); },
            [&](Grant &child) {
                Least least;
                commit_parts(least);
                least.add(child.usage);
                least.into(child);
            }))
        return grant;
    /* Made through parents: each ancestor's part, root first (as they were made), then the child's hold. */
    Least least;
    ledger::Settle settle;
    settle.before_lock = [&] { commit_parts(least); };
    grant = ledger::commit(reservation, amount, &settle);
    if (settle.origin != reservation)
        return grant;
    least.add(grant.usage);
    least.into(grant);
    return grant;
}

bool release(int64 reservation)
{
    locks::start_call();
    auto const release_parts = [reservation] {
        settle_parts(reservation, [](int64 part, ledger::Settle &as_part) { ledger::release(part, &as_part); });
    };
    bool released = false;
    if (own_hold_first(
            reservation, released, [&](ledger::Settle *settle) { return ledger::release(reservation, settle); },
            [&](bool) { release_parts(); }))
        return released;
    ledger::Settle settle;
    settle.before_lock = release_parts;
    return ledger::release(reservation, &settle);
}

bool is_limited(AccountKey key)
{
    /* No parents on a distributed quota (distribute() and set_parent() refuse them): one read on the team's shard. */
    if (storage::distributed())
        return ledger::is_limited(key);
    Read const first = links_of(key);
    if (!first.links.has_parent)
        return ledger::is_limited(key);
    if (ledger::is_limited(key))
        return true;
    Least least;
    return any_limited_above(first.links, key, least);
}

void set_parent(AccountKey key, const Datum *parent)
{
    if (!storage::links_installed())
        throw Error(ERRCODE_FEATURE_NOT_SUPPORTED, "quota.set_parent() needs quota 1.2",
                    {}, "Run ALTER EXTENSION quota UPDATE.");
    if (parent != nullptr && storage::distributed())
        throw Error(ERRCODE_FEATURE_NOT_SUPPORTED, "parent budgets are not available on a distributed quota",
                    "A parent budget spans several teams, and on Citus every quota call stays on one team's shard.",
                    {});
    ledger::with_account_locked(key, [&] {
        /*
         * One change of the tree at a time: the cycle and depth checks read it
         * whole.  Taken after the account, so that nobody waits for an account
         * while holding it (a transaction that spent from the account and then
         * changes its links would otherwise deadlock with another change).
         */
        storage::lock_links();
        Links links;
        storage::read_links(key, links);
        links.has_parent = parent != nullptr;
        links.parent_length = 0;
        if (parent != nullptr) {
            AccountKey const above{*parent, key.resource};
            Account exists;
            if (!storage::fetch_account(above, exists))
                throw Error(ERRCODE_NO_DATA_FOUND,
                            format("quota account \"%s\" for resource \"%s\" does not exist",
                                   storage::team_name(above), storage::resource_name(above)),
                            "The parent must exist before an account can spend from it.",
                            "Create it with quota.set_account().");
            storage::TreeShape const shape = storage::tree_shape(key, *parent);
            if (shape.cycle)
                throw Error(ERRCODE_INVALID_PARAMETER_VALUE,
                            format("quota account \"%s\" cannot spend from \"%s\": that would make a cycle",
                                   storage::team_name(key), storage::team_name(above)),
                            format("\"%s\" is \"%s\" or one of its descendants.", storage::team_name(above),
                                   storage::team_name(key)));
            if (shape.above + shape.below > kMaxChain)
                throw Error(ERRCODE_INVALID_PARAMETER_VALUE,
                            format("quota account \"%s\" cannot spend from \"%s\": the chain would be %d accounts long",
                                   storage::team_name(key), storage::team_name(above), shape.above + shape.below),
                            format("A chain of parents has at most %d accounts (e.g. org > team > user > key).",
                                   kMaxChain));
            bridge::guarded([&] {
                text *name = DatumGetTextPP(*parent);
                links.parent_length = VARSIZE_ANY_EXHDR(name);
                std::memcpy(links.parent, VARDATA_ANY(name), links.parent_length);
                links.parent[links.parent_length] = '\0';
            });
        }
        storage::write_links(key, links);
    });
}

void set_concurrency(AccountKey key, const int32 *cap)
{
    if (!storage::links_installed())
        throw Error(ERRCODE_FEATURE_NOT_SUPPORTED, "quota.set_concurrency() needs quota 1.2",
                    {}, "Run ALTER EXTENSION quota UPDATE.");
    if (cap != nullptr && *cap < 0)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, format("invalid max_open_holds %d", *cap),
                    "A concurrency cap is a number of open holds, 0 or more (NULL: no cap).");
    ledger::with_account_locked(key, [&] {
        storage::lock_links(); /* after the account, as set_parent() */
        Links links;
        storage::read_links(key, links);
        links.has_cap = cap != nullptr;
        links.cap = cap != nullptr ? *cap : 0;
        storage::write_links(key, links);
    });
}

bool capped(AccountKey key)
{
    return links_of(key).links.has_cap;
}

void relcache_changed(Oid relation)
{
    cache.changed(relation);
}

} // namespace quota::tree
