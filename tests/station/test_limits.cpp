// Spec limits that layer (docs/limits.md): the recipe's own limits, then the
// generic limits file, then the cell model's file beside it — each override
// recording its file:line, each error naming its place; the station file's
// [station] spec_limits; `eolstation config check` printing the resolved
// limits and their sources.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eol/station/config.hpp"
#include "support/cli_test.hpp"

namespace fs = std::filesystem;
using namespace eol::station;

namespace {

void write_file(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
}

int line_of(const std::string& text, const std::string& needle) {
    const auto pos = text.find(needle);
    REQUIRE_MESSAGE(pos != std::string::npos, needle);
    return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(pos), '\n'));
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const std::string kRecipe = R"(name = "layered"
[cell]
model = "TEST-18650"
capacity_ah = 3.0

[[steps]]
name = "ocv"
kind = "ocv"
  [[steps.measurements]]
  name = "ocv_v"
  low = 3.4
  high = 4.2

[[steps]]
name = "pulse"
kind = "pulse"
current_a = 6.0
duration_s = 10
relaxation_s = 60
sample_interval_s = 0.01
  [[steps.measurements]]
  name = "r0_ohm"
  high = 0.045
  [[steps.measurements]]
  name = "tau1_s"
)";

const std::string kGeneric = R"(# generic
[measurements.ocv_v]
low = 3.5

[measurements.r0_ohm]
unit = "ohm"
high = 0.050

[measurements.tau1_s]
low = 2
high = 40
)";

const std::string kModel = R"(# TEST-18650
[measurements.r0_ohm]
high = 0.040
)";

struct Files {
    eol::test::TempDir tmp;
    fs::path recipe = tmp.dir / "recipes/layered.toml";
    fs::path generic = tmp.dir / "limits/generic.toml";
    fs::path model = tmp.dir / "limits/TEST-18650.toml";
    Files() {
        write_file(recipe, kRecipe);
        write_file(generic, kGeneric);
        write_file(model, kModel);
    }
    std::string name(const fs::path& p) const { return p.lexically_normal().string(); }
};

std::vector<Diagnostic> errors_applying(const Files& f) {
    Recipe r = load_recipe(f.recipe);
    try {
        apply_limits(r, f.generic);
    } catch (const ConfigError& e) {
        return e.diagnostics();
    }
    FAIL("expected a ConfigError");
    return {};
}

}  // namespace

TEST_CASE("limits: the model file overrides the generic file, which overrides the recipe, each limit knows its source") {
    Files f;
    Recipe r = load_recipe(f.recipe);
    // Before layering: the recipe's own, with their lines in the recipe.
    REQUIRE(r.find_measurement("r0_ohm"));
    CHECK(r.find_measurement("r0_ohm")->high_from.to_string() ==
          f.name(f.recipe) + ":" + std::to_string(line_of(kRecipe, "high = 0.045")));

    apply_limits(r, f.generic);
    const MeasurementSpec* ocv = r.find_measurement("ocv_v");
    const MeasurementSpec* r0 = r.find_measurement("r0_ohm");
    const MeasurementSpec* tau = r.find_measurement("tau1_s");
    REQUIRE((ocv && r0 && tau));
    CHECK(*ocv->low == doctest::Approx(3.5));  // generic
    CHECK(ocv->low_from.to_string() == f.name(f.generic) + ":" + std::to_string(line_of(kGeneric, "low = 3.5")));
    CHECK(*ocv->high == doctest::Approx(4.2));  // the recipe's, untouched
    CHECK(ocv->high_from.to_string() == f.name(f.recipe) + ":" + std::to_string(line_of(kRecipe, "high = 4.2")));
    CHECK(*r0->high == doctest::Approx(0.040));  // model over generic over recipe
    CHECK(r0->high_from.to_string() == f.name(f.model) + ":" + std::to_string(line_of(kModel, "high = 0.040")));
    CHECK(*tau->low == doctest::Approx(2));      // the recipe had none
    CHECK(*tau->high == doctest::Approx(40));
    CHECK(r0->describe_limits() == "r0_ohm low none; high 0.04 from " + f.name(f.model) + ":3");

    REQUIRE(r.limit_layers.size() == 2);
    CHECK(r.limit_layers[0].file == f.generic);
    CHECK(r.limit_layers[0].overrides == 4);  // ocv low, r0 high, tau1 low and high
    CHECK(r.limit_layers[1].file.filename() == "TEST-18650.toml");
    CHECK(r.limit_layers[1].present);
    CHECK(r.limit_layers[1].overrides == 1);
}

TEST_CASE("limits: a cell model without its own file takes the generic limits, and the layers say so") {
    Files f;
    fs::remove(f.model);
    Recipe r = load_recipe(f.recipe);
    apply_limits(r, f.generic);
    CHECK(*r.find_measurement("r0_ohm")->high == doctest::Approx(0.050));
    REQUIRE(r.limit_layers.size() == 2);
    CHECK_FALSE(r.limit_layers[1].present);
}

TEST_CASE("limits: an unknown measurement name is an error at its line with a did-you-mean") {
    Files f;
    const std::string text = kModel + "\n[measurements.r0_mohm]\nhigh = 45\n";
    write_file(f.model, text);
    const auto ds = errors_applying(f);
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].file == f.name(f.model));
    CHECK(ds[0].line == line_of(text, "[measurements.r0_mohm]"));
    CHECK(ds[0].key_path == "measurements.r0_mohm");
    CHECK(contains(ds[0].message, "unknown measurement 'r0_mohm'"));
    CHECK(contains(ds[0].message, "did you mean 'r0_ohm'?"));
}

TEST_CASE("limits: low above high after layering names both sources") {
    Files f;
    const std::string text = "[measurements.ocv_v]\nlow = 4.3\n";  // above the recipe's high 4.2
    write_file(f.model, text);
    const auto ds = errors_applying(f);
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].file == f.name(f.model));
    CHECK(ds[0].line == 2);
    CHECK(ds[0].key_path == "measurements.ocv_v.low");
    CHECK(contains(ds[0].message, "low 4.3 (from " + f.name(f.model) + ":2) is above high 4.2 (from " +
                                      f.name(f.recipe) + ":" + std::to_string(line_of(kRecipe, "high = 4.2")) + ")"));
}

TEST_CASE("limits: a wrong unit, a wrong type, an unknown key and a [safety] table are errors at their lines") {
    Files f;
    const std::string text = R"([measurements.r0_ohm]
unit = "mohm"
high = 40

[measurements.tau1_s]
high = "forty"
hi = 40

[safety]
temp_abort_c = 70
)";
    write_file(f.model, text);
    const auto ds = errors_applying(f);
    REQUIRE(ds.size() == 4);
    CHECK(ds[0].line == 2);
    CHECK(ds[0].key_path == "measurements.r0_ohm.unit");
    CHECK(contains(ds[0].message, "unit of r0_ohm is 'ohm', not 'mohm'"));
    CHECK(ds[1].line == 6);
    CHECK(ds[1].key_path == "measurements.tau1_s.high");
    CHECK(contains(ds[1].message, "expected number, got string"));
    CHECK(ds[2].line == 7);
    CHECK(contains(ds[2].message, "unknown key 'hi'"));
    CHECK(ds[3].line == 9);
    CHECK(ds[3].key_path == "safety");
    CHECK(contains(ds[3].message, "station file's [limits]"));
    // Nothing of a rejected override was applied.
    Recipe r = load_recipe(f.recipe);
    CHECK_THROWS_AS(apply_limits(r, f.generic), ConfigError);
}

TEST_CASE("limits: a missing generic file is an error naming where it was looked for") {
    Files f;
    Recipe r = load_recipe(f.recipe);
    try {
        apply_limits(r, f.tmp.dir / "limits/nope.toml");
        FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
        REQUIRE(e.diagnostics().size() == 1);
        CHECK(contains(e.diagnostics()[0].message, "does not exist"));
        CHECK(contains(e.diagnostics()[0].message, "nope.toml"));
    }
    // A TOML syntax error in a limits file: its own file:line:col.
    write_file(f.generic, "[measurements.ocv_v\nlow = 3\n");
    Recipe r2 = load_recipe(f.recipe);
    try {
        apply_limits(r2, f.generic);
        FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
        REQUIRE_FALSE(e.diagnostics().empty());
        CHECK(e.diagnostics()[0].file == f.name(f.generic));
        CHECK(e.diagnostics()[0].line == 1);
    }
}

TEST_CASE("limits: the station file's spec_limits layers the shipped files, config check prints the sources") {
    eol::test::TempDir tmp;
    const fs::path cfg = tmp.dir / "config";
    fs::copy(EOL_CONFIG_DIR, cfg, fs::copy_options::recursive);
    const fs::path station = cfg / "station.example.toml";
    const StationConfig c = load_station_config(station);
    CHECK(c.limits_file == (cfg / "limits/generic.toml").lexically_normal());
    REQUIRE(c.recipe.limit_layers.size() == 2);
    CHECK(c.recipe.limit_layers[1].file.filename() == "INR18650-30Q.toml");
    CHECK(c.recipe.limit_layers[1].present);
    const MeasurementSpec* r0 = c.recipe.find_measurement("r0_ohm");
    REQUIRE(r0);
    CHECK(*r0->high == doctest::Approx(0.045));
    CHECK(contains(r0->high_from.to_string(), "limits/INR18650-30Q.toml:"));
    CHECK(contains(c.recipe.find_measurement("ocv_v")->low_from.to_string(), "limits/generic.toml:"));
    // Every limit the shipped recipe sets is set by a limits file, to the same value.
    const Recipe own = load_recipe(cfg / "recipes/eol-18650.toml");
    for (const auto* m : own.measurements()) {
        const MeasurementSpec* l = c.recipe.find_measurement(m->name);
        REQUIRE(l);
        CHECK_MESSAGE(l->low == m->low, m->name);
        CHECK_MESSAGE(l->high == m->high, m->name);
        if (m->low) CHECK_MESSAGE(contains(l->low_from.file, "limits/"), m->name);
        if (m->high) CHECK_MESSAGE(contains(l->high_from.file, "limits/"), m->name);
    }

    const eol::test::Run out = eol::test::run_cli("config check '" + station.string() + "'");
    CHECK_MESSAGE(out.code == 0, out.out);
    CHECK(contains(out.out, "spec limits  "));
    CHECK(contains(out.out, "limits/INR18650-30Q.toml"));
    CHECK(contains(out.out, "r0_ohm"));
    CHECK(contains(out.out, "high 0.045 (" + (cfg / "limits/INR18650-30Q.toml").lexically_normal().string() + ":"));
    const eol::test::Run js = eol::test::run_cli("config check --json '" + station.string() + "'");
    REQUIRE(js.code == 0);
    const auto j = nlohmann::json::parse(js.out);
    CHECK(j["recipe"]["limit_layers"].size() == 2);
    bool found = false;
    for (const auto& st : j["recipe"]["steps"])
        for (const auto& m : st["measurements"])
            if (m["name"] == "r0_ohm") found = contains(m["high_from"].get<std::string>(), "INR18650-30Q.toml:");
    CHECK(found);

    // A missing spec_limits file: an error at the station key.
    fs::remove(cfg / "limits/generic.toml");
    try {
        load_station_config(station);
        FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
        bool at_key = false;
        for (const auto& d : e.diagnostics())
            at_key = at_key || (d.key_path == "station.spec_limits" && contains(d.message, "does not exist"));
        CHECK(at_key);
    }
    // An error inside a layer fails the station load with the layer's file:line.
    fs::copy_file(EOL_CONFIG_DIR "/limits/generic.toml", cfg / "limits/generic.toml");
    std::ofstream(cfg / "limits/INR18650-30Q.toml", std::ios::app) << "\n[measurements.r9_ohm]\nhigh = 1\n";
    const eol::test::Run bad = eol::test::run_cli("config check '" + station.string() + "'");
    CHECK(bad.code == 2);
    CHECK(contains(bad.out, "limits/INR18650-30Q.toml:"));
    CHECK(contains(bad.out, "unknown measurement 'r9_ohm'"));

    // --recipe with --limits.
    const eol::test::Run rl = eol::test::run_cli("config check --recipe '" + (cfg / "recipes/eol-18650.toml").string() +
                                                 "' --limits '" + (cfg / "limits/generic.toml").string() + "'");
    CHECK(rl.code == 2);  // the same broken model file
    CHECK(eol::test::run_cli("config check --limits x '" + station.string() + "'").code == 2);
}
