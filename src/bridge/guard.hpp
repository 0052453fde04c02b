/*
 * guard.hpp — PostgreSQL → C++: run a PostgreSQL call so that its error
 * becomes a C++ exception instead of a longjmp through C++ frames.
 *
 * guarded(fn) sets its own sigsetjmp (PG_TRY) around fn.  If fn raises a
 * PostgreSQL error, the memory context is restored, the error data copied
 * and flushed, and quota::PgError is thrown once PG_TRY has been left.
 *
 * Rules for fn: call only PostgreSQL (C) functions, keep only trivially
 * destructible locals, and never throw a C++ exception.  The caller must
 * not touch the database again after catching PgError: the entry point
 * re-throws it at once and the transaction's abort cleans up (SPI, locks).
 */
#pragma once

#include "bridge/error.hpp"

#include <type_traits>

namespace quota::bridge {

template <typename Fn>
inline void guarded(Fn &&fn)
{
    MemoryContext const saved_context = CurrentMemoryContext;
    ErrorData *volatile caught = nullptr;

    PG_TRY();
    {
        fn();
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(saved_context);
        caught = CopyErrorData();
        FlushErrorState();
    }
    PG_END_TRY();

    if (caught != nullptr)
        throw PgError(caught);
}

/* guarded() for a call that returns a trivially copyable value */
template <typename Fn>
inline auto guarded_value(Fn &&fn) -> decltype(fn())
{
    using Result = decltype(fn());
    static_assert(std::is_trivially_copyable_v<Result>, "guarded values must be plain data");
    Result result{};
    guarded([&] { result = fn(); });
    return result;
}

} // namespace quota::bridge
