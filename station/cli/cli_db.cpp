// eolstation db info — what is in a results store, without changing it.
#include <fmt/format.h>

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

}  // namespace

void add_db_commands(CLI::App& app) {
    CLI::App* db = app.add_subcommand("db", "Inspect the results store (SQLite)");
    db->require_subcommand(1);

    auto info_opts = std::make_shared<InfoOptions>();
    CLI::App* info = db->add_subcommand(
        "info",
        "Print the store's schema version (and this binary's), journal mode, file size and the row count of "
        "every table. Read-only: never migrates; a database newer than this binary is an error (exit 2).");
    info->add_option("--db", info_opts->db, "Results database file")->required();
    info->add_flag("--json", info_opts->json, "Print JSON");
    info->callback([info_opts] { run_info(*info_opts); });
}

}  // namespace eol::cli
