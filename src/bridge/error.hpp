/*
 * error.hpp — the exceptions that carry errors through C++ code.
 *
 * Two kinds travel upwards until the SQL entry point (bridge/entry.cpp)
 * turns them into an ereport():
 *   quota::Error    an error the extension raises itself: SQLSTATE,
 *                   message, detail, hint in PostgreSQL's style.
 *   quota::PgError  a PostgreSQL error caught by bridge::guarded(); it owns
 *                   a copy of the ErrorData and is re-thrown unchanged.
 */
#pragma once

#include "pg.hpp"

#include <exception>
#include <string>

namespace quota {

class Error : public std::exception {
public:
    Error(int sqlstate, std::string message, std::string detail = {}, std::string hint = {})
        : sqlstate_(sqlstate), message_(std::move(message)), detail_(std::move(detail)), hint_(std::move(hint))
    {
    }

    const char *what() const noexcept override { return message_.c_str(); }
    int sqlstate() const noexcept { return sqlstate_; }
    const std::string &message() const noexcept { return message_; }
    const std::string &detail() const noexcept { return detail_; }
    const std::string &hint() const noexcept { return hint_; }

private:
    int sqlstate_;
    std::string message_;
    std::string detail_;
    std::string hint_;
};

class PgError : public std::exception {
public:
    explicit PgError(ErrorData *data) noexcept : data_(data) {}
    const char *what() const noexcept override { return data_->message != nullptr ? data_->message : "postgres error"; }
    ErrorData *data() const noexcept { return data_; }

private:
    ErrorData *data_; /* palloc'd in the caller's memory context */
};

/* printf-style formatting into a std::string, for messages */
std::string format(const char *fmt, ...) pg_attribute_printf(1, 2);

} // namespace quota
