#include "bridge/entry.hpp"

#include "bridge/error.hpp"
#include "storage/store.hpp"

#include <cstdarg>
#include <cstdio>
#include <new>

namespace quota {

std::string format(const char *fmt, ...)
{
    char buffer[512];
    va_list args;
    va_start(args, fmt);
    int const length = std::vsnprintf(buffer, sizeof(buffer), fmt, args);
    va_end(args);
    if (length < 0)
        return std::string(fmt);
    if (static_cast<size_t>(length) < sizeof(buffer))
        return std::string(buffer, static_cast<size_t>(length));

    std::string result(static_cast<size_t>(length) + 1, '\0');
    va_start(args, fmt);
    std::vsnprintf(result.data(), result.size(), fmt, args);
    va_end(args);
    result.resize(static_cast<size_t>(length));
    return result;
}

namespace bridge {

namespace {

/*
 * The error being reported, copied out of the exception before the catch
 * block is left.  Fixed buffers: copying must not allocate, since the
 * allocation could itself fail inside the catch block.
 */
struct PendingError {
    int sqlstate;
    char message[1024];
    char detail[1024];
    char hint[1024];
};

PendingError pending;

void copy_text(char *target, size_t size, const char *source)
{
    std::snprintf(target, size, "%s", source);
}

} // namespace

Datum call(FunctionCallInfo fcinfo, Body body, Access access)
{
    Oid saved_user = InvalidOid;
    int saved_context = 0;
    bool switched = false;
    ErrorData *pg_error = nullptr;
    bool failed = false;
    Datum result = (Datum) 0;

    try {
        if (access == Access::Owner) {
            Oid const owner = storage::tables_owner();
            GetUserIdAndSecContext(&saved_user, &saved_context);
            SetUserIdAndSecContext(owner, saved_context | SECURITY_LOCAL_USERID_CHANGE);
            switched = true;
        }
        result = body(fcinfo);
    } catch (const PgError &e) {
        pg_error = e.data();
    } catch (const Error &e) {
        failed = true;
        pending.sqlstate = e.sqlstate();
        copy_text(pending.message, sizeof(pending.message), e.message().c_str());
        copy_text(pending.detail, sizeof(pending.detail), e.detail().c_str());
        copy_text(pending.hint, sizeof(pending.hint), e.hint().c_str());
    } catch (const std::bad_alloc &) {
        failed = true;
        pending.sqlstate = ERRCODE_OUT_OF_MEMORY;
        copy_text(pending.message, sizeof(pending.message), "out of memory");
        pending.detail[0] = pending.hint[0] = '\0';
    } catch (const std::exception &e) {
        failed = true;
        pending.sqlstate = ERRCODE_INTERNAL_ERROR;
        copy_text(pending.message, sizeof(pending.message), e.what());
        pending.detail[0] = pending.hint[0] = '\0';
    } catch (...) {
        failed = true;
        pending.sqlstate = ERRCODE_INTERNAL_ERROR;
        copy_text(pending.message, sizeof(pending.message), "unexpected C++ exception in quota");
        pending.detail[0] = pending.hint[0] = '\0';
    }

    /* On error the transaction's abort restores the user as well. */
    if (switched)
        SetUserIdAndSecContext(saved_user, saved_context);

    if (pg_error != nullptr)
        ReThrowError(pg_error);
    if (failed)
        ereport(ERROR,
                (errcode(pending.sqlstate),
                 errmsg_internal("%s", pending.message),
                 pending.detail[0] != '\0' ? errdetail_internal("%s", pending.detail) : 0,
                 pending.hint[0] != '\0' ? errhint("%s", pending.hint) : 0));
    return result;
}

} // namespace bridge
} // namespace quota
