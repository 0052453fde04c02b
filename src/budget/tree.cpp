/*
 * tree.cpp — parent budgets and concurrency caps (see tree.hpp).
 */
#include "budget/tree.hpp"

#include "bridge/error.hpp"
#include "bridge/guard.hpp"
#include "bridge/subtransaction.hpp"
#include "budget/ledger.hpp"
#include "budget/locks.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>

namespace quota::tree {

namespace {

using storage::Links;

/*
 * Per-backend cache, deliberately: account (team '\0' resource) → its row
 * of quota.links, or none.  Emptied by any invalidation of quota.links
 * (its trigger sends one every backend receives when a change commits),
 * and when it grows past kMaxCached.  `generation` counts invalidations:
 * a call compares it before and after taking an account's lock.
 */
std::unordered_map<std::string, Links> cache;
bool stale = true;
bool any = true;           /* quota.links has rows (read again after each invalidation) */
Oid watched = InvalidOid;  /* quota.links, once read */
uint64 generation = 0;
constexpr size_t kMaxCached = 100000;

std::string account_name(AccountKey key)
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

/* Take in pending invalidations; after one (or when full) start again. */
void refresh()
{
    bridge::guarded([] { AcceptInvalidationMessages(); });
    if (!stale && cache.size() < kMaxCached)
        return;
    cache.clear();
    stale = false;
    watched = storage::links_relid();
    any = storage::any_links(); /* none: no account needs a lookup */
}

/* The account's links as of now, and the generation they were read in. */
struct Read {
    Links links;
    uint64 generation = 0;
};

Read links_of(AccountKey key)
{
    refresh();
    Read read;
    read.generation = generation;
    if (!any)
        return read;
    std::string name = account_name(key);
    auto found = cache.find(name);
    if (found == cache.end()) {
        Links links;
        storage::read_links(key, links);
        found = cache.emplace(std::move(name), links).first;
    }
    read.links = found->second;
    return read;
}

bool same(const Links &a, const Links &b)
{
    return a.has_parent == b.has_parent && a.has_cap == b.has_cap && (!a.has_cap || a.cap == b.cap) &&
           (!a.has_parent ||
            (a.parent_length == b.parent_length && std::memcmp(a.parent, b.parent, a.parent_length) == 0));
}

/*
 * With the account's lock held (its step is done): if quota.links changed
 * since `read`, and this account's links with it, the step used stale ones.
 * A set_parent() or set_concurrency() on it holds the whole account until
 * it commits, and its invalidation is queued before its locks go, so the
 * check after the lock sees every change the lock waited for.
 */
void still_as_read(AccountKey key, const Read &read)
{
    bridge::guarded([] { AcceptInvalidationMessages(); });
    if (generation == read.generation)
        return;
    Links now;
    storage::read_links(key, now);
    if (same(now, read.links))
        return;
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
        int64 const wait = resets_at - now;
        int64 const seconds = (wait + USECS_PER_SEC - 1) / USECS_PER_SEC;
        grant.has_retry_after = true;
        grant.retry_after = static_cast<int32>(std::clamp<int64>(seconds, 1, PG_INT32_MAX));
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
    explicit OriginScope(int64 origin) { storage::set_hold_origin(origin); }
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

/*
 * A spend on an account with links.  `step(key, cap)` is the ledger's call
 * on one account; `kind` says what a denial takes back from the child's
 * reply (the credits its own step granted).
 */
enum class Kind { Reserve, Charge };

template <typename Step>
Grant spend_chain(AccountKey key, const Read &first, int64 amount, Kind kind, const Step &step)
{
    locks::SavedTable const saved = locks::save();
    bridge::Subtransaction const outer = bridge::begin_subtransaction();
    bool keep = false;
    Grant head;
    try {
        uint64 const inserted = storage::holds_inserted();
        {
            OriginScope const origin(kind == Kind::Reserve && first.links.has_parent ? storage::kOriginSelf : 0);
            head = step(key, first.links.has_cap ? first.links.cap : -1);
        }
        still_as_read(key, first);
        locks::in_call(locks::account_id(key));
        TimestampTz const now = GetCurrentTransactionStartTimestamp();
        Least least;
        least.amount = amount;
        least.add(head.usage);
        if (!head.granted) {
            any_limited_above(first.links, key, least);
            least.worst_into(head, now);
        } else if (kind == Kind::Reserve && storage::holds_inserted() == inserted) {
            keep = true; /* an idempotent retry: the first call held on the chain already */
            any_limited_above(first.links, key, least);
        } else {
            keep = true;
            Links links = first.links;
            AccountKey at = key;
            for (int32 depth = 1; links.has_parent; depth++) {
                if (depth >= kMaxChain)
                    chain_too_long(key);
                at = parent_key(links, at);
                Read const above = links_of(at);
                Grant step_grant;
                {
                    OriginScope const origin(kind == Kind::Reserve ? head.reservation : 0);
                    step_grant = step(at, above.links.has_cap ? above.links.cap : -1);
                }
                still_as_read(at, above);
                locks::in_call(locks::account_id(at));
                least.add(step_grant.usage);
                if (!step_grant.granted) {
                    /* Denied by an ancestor: the child's reply without this call, that ancestor's reset. */
                    keep = false;
                    Usage &usage = head.usage;
                    (kind == Kind::Reserve ? usage.held : usage.used) -= amount;
                    int64 taken = 0;
                    bool const over = __builtin_add_overflow(usage.used, usage.held, &taken);
                    usage.limited = !usage.unlimited && (over || taken >= usage.credit_limit);
                    usage.remaining = usage.limited ? 0 : usage.credit_limit - taken;
                    head.granted = false;
                    head.has_reservation = false;
                    head.reservation = 0;
                    head.has_retry_after = step_grant.has_retry_after;
                    head.retry_after = step_grant.retry_after;
                    head.usage.has_period = step_grant.usage.has_period;
                    head.usage.resets_at = step_grant.usage.resets_at;
                    least = Least{};
                    least.amount = amount;
                    least.add(usage);
                    least.add(step_grant.usage);
                    any_limited_above(above.links, at, least);
                    least.worst_into(head, now);
                    break;
                }
                links = above.links;
            }
        }
        least.into(head);
    } catch (...) {
        bridge::rollback_subtransaction(outer);
        locks::restore(saved);
        throw;
    }
    if (keep) {
        bridge::release_subtransaction(outer);
    } else {
        bridge::rollback_subtransaction(outer); /* a denial changes nothing, on any account */
        locks::restore(saved);
    }
    return head;
}

/* A spend: straight to the ledger for an account without links, along the chain otherwise. */
template <typename Step>
Grant spend(AccountKey key, int64 amount, Kind kind, const Step &step)
{
    locks::start_call();
    Read const first = links_of(key);
    if (first.links.has_parent)
        return spend_chain(key, first, amount, kind, step);
    Grant grant = step(key, first.links.has_cap ? first.links.cap : -1); /* one account: a denial changes nothing */
    still_as_read(key, first);
    return grant;
}

} // namespace

Grant reserve(AccountKey key, int64 amount, const TimestampTz *expires_at, const Datum *idempotency_key)
{
    return spend(key, amount, Kind::Reserve, [&](AccountKey at, int32 cap) {
        /* The idempotency key belongs to the child's hold: the ancestors' parts have none. */
        bool const child = at.team == key.team;
        return ledger::reserve(at, amount, expires_at, child ? idempotency_key : nullptr, cap);
    });
}

Grant charge(AccountKey key, int64 amount, bool allow_overdraft)
{
    return spend(key, amount, Kind::Charge,
                 [&](AccountKey at, int32) { return ledger::charge(at, amount, allow_overdraft); });
}

Grant commit(int64 reservation, const int64 *amount)
{
    locks::start_call();
    ledger::Settle settle;
    Grant grant = ledger::commit(reservation, amount, &settle);
    if (settle.origin != reservation)
        return grant;
    /* Made through parents: each ancestor's part, child first, as the hold was made. */
    locks::in_call(settle.account);
    Least least;
    least.add(grant.usage);
    for (int64 part : storage::ancestor_holds(reservation)) {
        ledger::Settle as_part;
        as_part.part = true;
        least.add(ledger::commit(part, amount, &as_part).usage);
        locks::in_call(as_part.account);
    }
    least.into(grant);
    return grant;
}

bool release(int64 reservation)
{
    locks::start_call();
    ledger::Settle settle;
    bool const released = ledger::release(reservation, &settle);
    if (settle.origin != reservation)
        return released;
    locks::in_call(settle.account);
    for (int64 part : storage::ancestor_holds(reservation)) {
        ledger::Settle as_part;
        as_part.part = true;
        ledger::release(part, &as_part);
        locks::in_call(as_part.account);
    }
    return released;
}

bool is_limited(AccountKey key)
{
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
    /* One change of the tree at a time: the cycle and depth checks read it whole. */
    storage::lock_links();
    ledger::with_account_locked(key, [&] {
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
    storage::lock_links();
    ledger::with_account_locked(key, [&] {
        Links links;
        storage::read_links(key, links);
        links.has_cap = cap != nullptr;
        links.cap = cap != nullptr ? *cap : 0;
        storage::write_links(key, links);
    });
}

void relcache_changed(Oid relation)
{
    if (relation == InvalidOid || relation == watched) {
        stale = true;
        generation++;
    }
}

} // namespace quota::tree
