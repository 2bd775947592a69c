// eolstation db info — what is in a results store, without changing it.
// eolstation db copy — a compacted copy of a store, with the page size chosen.
#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "eol/station/store.hpp"

namespace eol::cli {
namespace {

struct InfoOptions {
    std::string db;
    bool json = false;
};

std::string human_bytes(std::uintmax_t n) {
    if (n < 1024) return fmt::format("{} B", n);
    const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    std::size_t u = 0;
    for (v /= 1024.0; v >= 1024.0 && u + 1 < std::size(units); ++u) v /= 1024.0;
    return fmt::format("{:.1f} {} ({} bytes)", v, units[u], n);
}

void run_info(const InfoOptions& o) {
    // Read-only, no migration; a newer schema throws SchemaTooNewError (exit 2).
    const station::DbInfo i = station::Store::inspect(o.db);
    if (o.json) {
        nlohmann::json tables = nlohmann::json::object();
        for (const auto& [name, n] : i.table_counts) tables[name] = n;
        const nlohmann::json j{{"path", i.path.string()},
                               {"schema_version", i.schema_version},
                               {"known_version", i.known_version},
                               {"journal_mode", i.journal_mode},
                               {"file_size_bytes", i.file_size_bytes},
                               {"wal_size_bytes", i.wal_size_bytes},
                               {"page_size", i.page_size},
                               {"page_count", i.page_count},
                               {"tables", tables}};
        fmt::print("{}\n", j.dump(2));
        return;
    }
    std::string version_note = "current";
    if (i.schema_version < i.known_version)
        version_note = fmt::format("older: opening it to write migrates it to {}", i.known_version);
    fmt::print("database        {}\n", i.path.string());
    fmt::print("schema version  {} (this eolstation knows {}: {})\n", i.schema_version, i.known_version,
               version_note);
    fmt::print("journal mode    {}\n", i.journal_mode);
    fmt::print("file size       {}{}\n", human_bytes(i.file_size_bytes),
               i.wal_size_bytes ? fmt::format(" + WAL {}", human_bytes(i.wal_size_bytes)) : std::string());
    fmt::print("pages           {} x {} bytes\n", i.page_count, i.page_size);
    fmt::print("tables\n");
    for (const auto& [name, n] : i.table_counts) fmt::print("  {:<20} {:>12}\n", name, n);
}

struct CopyOptions {
    std::string db, out;
    int page_size = station::OpenOptions{}.page_size_bytes;
    bool json = false;
};

void run_copy(const CopyOptions& o) {
    // The source read-only: a store (or a usage error), never migrated.
    station::Store src = station::Store::open(o.db, station::OpenOptions{.read_only = true});
    const station::DbInfo before = src.info(false);
    const auto t0 = std::chrono::steady_clock::now();
    const auto counts = src.copy_to(o.out, o.page_size);  // every table's rows, the same in the copy
    const double took_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const station::DbInfo after = station::Store::inspect(o.out, false);
    std::int64_t rows = 0;
    for (const auto& [name, n] : counts) rows += n;
    if (o.json) {
        const nlohmann::json j{{"from", {{"path", before.path.string()},
                                          {"page_size", before.page_size},
                                          {"page_count", before.page_count},
                                          {"file_size_bytes", before.file_size_bytes}}},
                               {"to", {{"path", after.path.string()},
                                        {"page_size", after.page_size},
                                        {"page_count", after.page_count},
                                        {"file_size_bytes", after.file_size_bytes},
                                        {"journal_mode", after.journal_mode}}},
                               {"schema_version", after.schema_version},
                               {"rows", rows},
                               {"seconds", took_s}};
        fmt::print("{}\n", j.dump(2));
        return;
    }
    fmt::print("copied {} ({} pages x {} bytes, {})\n", before.path.string(), before.page_count, before.page_size,
               human_bytes(before.file_size_bytes));
    fmt::print("    to {} ({} pages x {} bytes, {}, journal mode {})\n", after.path.string(), after.page_count,
               after.page_size, human_bytes(after.file_size_bytes), after.journal_mode);
    fmt::print("{} rows in {} tables, schema version {}, the same in both; {:.1f} s\n", rows, counts.size(),
               after.schema_version, took_s);  // took_s: the counts and the copy
}

}  // namespace

void add_db_commands(CLI::App& app) {
    CLI::App* db = app.add_subcommand("db", "Inspect or copy the results store (SQLite)");
    db->require_subcommand(1);

    auto info_opts = std::make_shared<InfoOptions>();
    CLI::App* info = db->add_subcommand(
        "info",
        "Print the store's schema version (and this binary's), journal mode, file size and the row count of "
        "every table. Read-only: never migrates; a database newer than this binary is an error (exit 2).");
    info->add_option("--db", info_opts->db, "Results database file")->required();
    info->add_flag("--json", info_opts->json, "Print JSON");
    info->callback([info_opts] { run_info(*info_opts); });

    auto copy_opts = std::make_shared<CopyOptions>();
    CLI::App* copy = db->add_subcommand(
        "copy",
        "Write a compacted copy of a store to a new file, with the page size chosen (a store made before "
        "16 KiB pages became the default reads 10 M devices' bulk checks faster as a 16 KiB copy, "
        "docs/genealogy.md). Stop the station first: a store written to while it is copied gives a copy whose "
        "row counts differ, which is refused. The copy appears only when whole; an existing file is never "
        "written over (exit 2).");
    copy->add_option("--db", copy_opts->db, "Results database file to copy (read only)")->required();
    copy->add_option("--out", copy_opts->out, "The new store's file (must not exist)")->required();
    copy->add_option("--page-size", copy_opts->page_size, "Page size of the copy in bytes (512..65536, a power of two)")
        ->capture_default_str();
    copy->add_flag("--json", copy_opts->json, "Print JSON");
    copy->callback([copy_opts] { run_copy(*copy_opts); });
}

}  // namespace eol::cli
