/*
 * guard.hpp — PostgreSQL → C++: run a PostgreSQL call so that its error
 * becomes a C++ exception instead of a longjmp through C++ frames.
 *
 * guarded(fn) sets its own sigsetjmp (PG_TRY) around fn.  If fn raises a
 * PostgreSQL error, the memory context is restored, the error data copied
 * and flushed, and quota::PgError is thrown once PG_TRY has been left.
 *
 * Rules for fn: call only PostgreSQL (C) functions, keep only trivially
 * destructible locals, and never throw a C++ exception.  The last rule is
 * checked, not just written down: a C++ exception that escapes fn (also a
 * PgError from a guarded() call nested inside it) is caught inside PG_TRY,
 * where unwinding through the sigsetjmp would corrupt PostgreSQL's error
 * stack, and turned back into a PostgreSQL error there — the same error for
 * a PgError, the same SQLSTATE and message for a quota::Error — and an
 * assertion fails in assert-enabled builds.  The caller must not touch the
 * database again after catching PgError: the entry point re-throws it at
 * once and the transaction's abort cleans up (SPI, locks).
 */
#pragma once

#include "bridge/error.hpp"

#include <cstdio>
#include <type_traits>

namespace quota::bridge {

/* fn(), with every C++ exception it lets out raised as a PostgreSQL error instead (see above). */
template <typename Fn>
inline void without_exceptions(Fn &fn)
{
    ErrorData *pg_error = nullptr;
    int sqlstate = 0;
    char message[512];
    try {
        fn();
        return;
    } catch (const PgError &e) {
        pg_error = e.data();
    } catch (const Error &e) {
        sqlstate = e.sqlstate();
        std::snprintf(message, sizeof(message), "%s", e.message().c_str());
    } catch (...) {
        sqlstate = ERRCODE_INTERNAL_ERROR;
        std::snprintf(message, sizeof(message), "C++ exception inside a guarded PostgreSQL call");
    }
    /* Outside the catch blocks: a longjmp from here skips no exception object. */
    Assert(false); /* a guarded call threw: a bug in its caller */
    if (pg_error != nullptr)
        ReThrowError(pg_error);
    ereport(ERROR, (errcode(sqlstate), errmsg_internal("%s", message)));
}

template <typename Fn>
inline void guarded(Fn &&fn)
{
    MemoryContext const saved_context = CurrentMemoryContext;
    ErrorData *volatile caught = nullptr;

    PG_TRY();
    {
        without_exceptions(fn);
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
