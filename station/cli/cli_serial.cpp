// eolstation serial check | make — serial numbers per the configured scheme.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "eol/station/genealogy.hpp"
#include "eol/station/output.hpp"
#include "eol/station/serial.hpp"

namespace eol::cli {
namespace {

using station::SerialScheme;

// The cell scheme, or with --device the device scheme (a file given with
// --scheme replaces either).
SerialScheme scheme_from(const std::string& file, bool device = false) {
    if (!file.empty()) return SerialScheme::load(file);
    return device ? station::device_serial_scheme() : SerialScheme::default_scheme();
}

nlohmann::json to_json(const station::SerialError& e) {
    nlohmann::json j;
    j["message"] = e.message;
    switch (e.kind) {
        case station::SerialErrorKind::bad_character:
            j["kind"] = "bad_character";
            j["position"] = e.position;
            j["character"] = e.character;
            break;
        case station::SerialErrorKind::wrong_length:
            j["kind"] = "wrong_length";
            j["expected_length"] = e.expected_length;
            j["got_length"] = e.got_length;
            break;
        case station::SerialErrorKind::bad_check:
            j["kind"] = "bad_check";
            j["position"] = e.position;
            j["candidates"] = e.candidates;
            break;
        case station::SerialErrorKind::bad_field:
            j["kind"] = "bad_field";
            j["position"] = e.position;
            j["field"] = e.field;
            break;
    }
    return j;
}

struct CheckOptions {
    std::vector<std::string> serials;
    std::string scheme;
    bool device = false;
    bool json = false;
};

void run_check(const CheckOptions& o) {
    const SerialScheme scheme = scheme_from(o.scheme, o.device);
    nlohmann::json out = nlohmann::json::array();
    bool any_bad = false;
    for (const auto& input : o.serials) {
        const station::DecodeResult r = scheme.decode(input);
        if (!r) {
            any_bad = true;
            if (o.json) out.push_back({{"input", input}, {"valid", false}, {"error", to_json(*r.error)}});
            else fmt::print("{}: error: {}\n", input, r.error->message);
            continue;
        }
        const station::DecodedSerial& d = r.value;
        if (o.json) {
            nlohmann::json fields = nlohmann::json::object();
            for (const auto& f : d.fields) {
                if (f.number) fields[f.name] = *f.number;
                else fields[f.name] = f.text;
            }
            nlohmann::json j{{"input", input}, {"valid", true}, {"serial", d.serial}, {"fields", fields}};
            j["production_date"] = d.production_date ? nlohmann::json(d.production_date->iso()) : nlohmann::json();
            j["lot"] = d.lot;
            out.push_back(std::move(j));
        } else {
            std::string line = d.serial;
            if (d.production_date) line += fmt::format("  production_date={}", d.production_date->iso());
            if (scheme.field(station::SerialFieldKind::lot)) line += fmt::format("  lot={}", d.lot);
            for (const auto& f : d.fields) {
                if (f.kind == station::SerialFieldKind::lot || f.kind == station::SerialFieldKind::year ||
                    f.kind == station::SerialFieldKind::month || f.kind == station::SerialFieldKind::day)
                    continue;
                line += f.number ? fmt::format("  {}={}", f.name, *f.number) : fmt::format("  {}={}", f.name, f.text);
            }
            fmt::print("{}\n", line);
        }
    }
    if (o.json) fmt::print("{}\n", out.dump(2));
    if (any_bad) set_exit(station::ExitCode::domain_no);
}

struct MakeOptions {
    std::string lot;
    std::string date;
    std::size_t count = 1;
    std::uint64_t start = 1;
    std::string plant;
    std::string line;
    std::string scheme;
    bool device = false;
    bool json = false;
};

void run_make(const MakeOptions& o) {
    const SerialScheme scheme = scheme_from(o.scheme, o.device);
    station::SerialSpec spec;
    const bool dated = scheme.field(station::SerialFieldKind::year) != nullptr;
    const bool has_lot = scheme.field(station::SerialFieldKind::lot) != nullptr;
    if (dated && o.date.empty()) throw station::UsageError("--date is required: the serial scheme has a production date");
    if (has_lot && o.lot.empty()) throw station::UsageError("--lot is required: the serial scheme has a lot field");
    if (!dated && !o.date.empty())
        throw station::UsageError(fmt::format("--date: the {} serial scheme has no production date",
                                              o.device ? "device" : "given"));
    if (!has_lot && !o.lot.empty())
        throw station::UsageError(fmt::format("--lot: the {} serial scheme has no lot field", o.device ? "device" : "given"));
    if (dated) {
        const auto date = station::Date::parse_iso(o.date);
        if (!date)
            throw station::UsageError(fmt::format("--date: '{}' is not a valid date (YYYY-MM-DD)", o.date));
        spec.date = *date;
    }
    spec.lot = o.lot;
    spec.plant = o.plant;
    spec.line = o.line;
    spec.sequence = o.start;
    const std::vector<std::string> serials = scheme.make_range(spec, o.count);
    if (o.json) {
        fmt::print("{}\n", nlohmann::json(serials).dump(2));
        return;
    }
    std::string text;
    text.reserve(serials.size() * (scheme.length() + 1));
    for (const auto& s : serials) {
        text += s;
        text += '\n';
    }
    station::write_stdout(text);
}

}  // namespace

void add_serial_commands(CLI::App& app) {
    CLI::App* serial = app.add_subcommand("serial", "Check, decode and make cell (or, with --device, device) serial numbers");
    serial->require_subcommand(1);

    auto check_opts = std::make_shared<CheckOptions>();
    CLI::App* check = serial->add_subcommand(
        "check",
        "Normalize and check serials as typed or scanned; print each normalized serial with its decoded "
        "fields (production date, lot, …) or the error. Exit 1 if any is invalid.");
    check->add_option("serials", check_opts->serials, "Serials (quote one that contains spaces)")->required();
    check->add_option("--scheme", check_opts->scheme,
                      "Serial scheme TOML file (default: the built-in scheme, as config/serial-scheme.toml)");
    check->add_flag("--device", check_opts->device,
                    "Device serials (the device scheme, config/device-serial-scheme.toml) instead of cell serials");
    check->add_flag("--json", check_opts->json, "Print a JSON array, one object per serial");
    check->callback([check_opts] { run_check(*check_opts); });

    auto make_opts = std::make_shared<MakeOptions>();
    CLI::App* make = serial->add_subcommand(
        "make", "Print valid serials: cell serials of one lot and production date, or device serials with --device");
    make->add_option("--lot", make_opts->lot,
                     "Lot id (the lot field's characters; shorter is left-padded with 0); required for cell serials");
    make->add_option("--date", make_opts->date, "Production date YYYY-MM-DD; required for cell serials");
    make->add_flag("--device", make_opts->device,
                   "Device serials (the device scheme: plant, line, sequence) instead of cell serials");
    make->add_option("--count", make_opts->count, "How many serials")->check(CLI::Range(1, 100000000));
    make->add_option("--start", make_opts->start, "First sequence number (default 1)");
    make->add_option("--plant", make_opts->plant, "Plant field (default all 0)");
    make->add_option("--line", make_opts->line, "Line field (default 0)");
    make->add_option("--scheme", make_opts->scheme,
                     "Serial scheme TOML file (default: the built-in scheme, as config/serial-scheme.toml)");
    make->add_flag("--json", make_opts->json, "Print a JSON array of strings");
    make->callback([make_opts] { run_make(*make_opts); });
}

}  // namespace eol::cli
