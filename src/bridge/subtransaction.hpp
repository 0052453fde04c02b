/*
 * subtransaction.hpp — a subtransaction of the extension's own, from C++.
 *
 * A spending call on an account with parents (budget/tree.cpp) applies to
 * every account of the chain, all or nothing: it runs inside an internal
 * subtransaction, released when every account granted, rolled back when
 * one denied (or on any error), which undoes every write of the call and
 * gives back the row locks it took — as PL/pgSQL's exception blocks do.
 *
 * Each function is one guarded() PostgreSQL call (so an error in it is a
 * C++ exception), and puts back the caller's memory context and resource
 * owner, which starting and ending a subtransaction change.  After a
 * PgError from inside the subtransaction, rolling it back is the one thing
 * the caller may still do (that is what it is for), then re-throw.
 */
#pragma once

#include "bridge/guard.hpp"

namespace quota::bridge {

struct Subtransaction {
    MemoryContext context;
    ResourceOwner owner;
};

inline Subtransaction begin_subtransaction()
{
    return guarded_value([] {
        Subtransaction const outer{CurrentMemoryContext, CurrentResourceOwner};
        BeginInternalSubTransaction(nullptr);
        MemoryContextSwitchTo(outer.context);
        return outer;
    });
}

inline void release_subtransaction(const Subtransaction &outer)
{
    guarded([&outer] {
        ReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(outer.context);
        CurrentResourceOwner = outer.owner;
    });
}

inline void rollback_subtransaction(const Subtransaction &outer)
{
    guarded([&outer] {
        RollbackAndReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(outer.context);
        CurrentResourceOwner = outer.owner;
    });
}

} // namespace quota::bridge
