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

#include <initializer_list>

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
    /* In the caller's context: an error of the rollback itself is copied where it outlives the subtransaction. */
    MemoryContextSwitchTo(outer.context);
    guarded([&outer] {
        RollbackAndReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(outer.context);
        CurrentResourceOwner = outer.owner;
    });
}

/*
 * A copy of a caught PostgreSQL error in the caller's context.  The copy
 * guarded() made lives in the context that was current inside the
 * subtransaction (an SPI connection's, say), which rolling it back frees:
 * take this copy first, roll back, then throw PgError(copy).
 */
inline ErrorData *error_outside(const ErrorData *error, const Subtransaction &outer)
{
    return guarded_value([error, &outer] {
        MemoryContext const saved = MemoryContextSwitchTo(outer.context);
        auto *copy = static_cast<ErrorData *>(palloc(sizeof(ErrorData)));
        *copy = *error;
        for (char **field : {&copy->message, &copy->detail, &copy->detail_log, &copy->hint, &copy->context,
                             &copy->backtrace, &copy->schema_name, &copy->table_name, &copy->column_name,
                             &copy->datatype_name, &copy->constraint_name, &copy->internalquery}) {
            if (*field != nullptr)
                *field = pstrdup(*field);
        }
        copy->assoc_context = outer.context;
        MemoryContextSwitchTo(saved);
        return copy;
    });
}

} // namespace quota::bridge
