// tests/support/raw_sqlite.hpp — raw SQLite access to a store's file, as a
// different program (or an attacker with the file) would have: statements
// run beside the store's own connections, with none of its checks.
// Errors: exec() returns SQLite's message ("" on success); the readers fail
// the test (REQUIRE) when a statement does not prepare.
#pragma once

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace eol::test {

struct Raw {
    sqlite3* db = nullptr;
    explicit Raw(const std::filesystem::path& p) { REQUIRE(sqlite3_open(p.c_str(), &db) == SQLITE_OK); }
    ~Raw() { sqlite3_close(db); }
    Raw(const Raw&) = delete;
    Raw& operator=(const Raw&) = delete;
    // Returns "" on success, else SQLite's message.
    std::string exec(const std::string& sql) {
        char* err = nullptr;
        const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
        std::string msg = rc == SQLITE_OK ? "" : (err ? err : "error");
        sqlite3_free(err);
        return msg;
    }
    std::string text(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
        std::string out;
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
            out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
        return out;
    }
    std::int64_t integer(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
        std::int64_t v = -1;
        if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        return v;
    }
    // Every row as "a|b|c\n" (NULL as "NULL").
    std::string rows(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
        std::string out;
        while (sqlite3_step(s) == SQLITE_ROW) {
            for (int k = 0; k < sqlite3_column_count(s); ++k) {
                const unsigned char* t = sqlite3_column_text(s, k);
                out += k ? "|" : "";
                out += t ? reinterpret_cast<const char*>(t) : "NULL";
            }
            out += '\n';
        }
        sqlite3_finalize(s);
        return out;
    }
    std::vector<std::string> column(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
        std::vector<std::string> out;
        while (sqlite3_step(s) == SQLITE_ROW) out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
        sqlite3_finalize(s);
        return out;
    }
};

}  // namespace eol::test
