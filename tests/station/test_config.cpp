// Station configuration and recipes: every kind of configuration error is
// reported with file, line, column and key path, all of them at once; the
// shipped example station and recipe load; `eolstation config check` exits 2
// with the diagnostics on stderr.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eol/station/config.hpp"
#include "support/cli_test.hpp"
#include "support/process.hpp"
#include "support/station_test.hpp"

namespace fs = std::filesystem;
using namespace eol::station;

namespace {

void write_file(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
}

/// 1-based line of the first occurrence of `needle` in `text`.
int line_of(const std::string& text, const std::string& needle) {
    const auto pos = text.find(needle);
    REQUIRE_MESSAGE(pos != std::string::npos, needle);
    return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(pos), '\n'));
}

/// 1-based column of `needle` on its line.
int column_of(const std::string& text, const std::string& needle) {
    const auto pos = text.find(needle);
    REQUIRE(pos != std::string::npos);
    const auto nl = text.rfind('\n', pos);
    return static_cast<int>(nl == std::string::npos ? pos + 1 : pos - nl);
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
    const auto pos = text.find(from);
    REQUIRE_MESSAGE(pos != std::string::npos, from);
    return text.replace(pos, from.size(), to);
}

const std::string kRecipe = R"(name = "test-recipe"
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
name = "dcir"
kind = "dcir"
  [[steps.measurements]]
  name = "dcir_ohm"
  high = 0.06

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

[[steps]]
name = "heat"
kind = "heat"
current_a = 3.0
duration_s = 300
cooling_s = 300
  [[steps.measurements]]
  name = "temp_rise_k"
  high = 3
)";

const std::string kStation = R"([station]
id = "T-1"
recipe = "recipes/test.toml"
serial_scheme = "serial.toml"
store = "results.db"
ambient = { thermo = "tc1", channel = 7 }

[instruments.load1]
driver = "scpi_load"
address = "tcp://127.0.0.1:15025"
dialect = "dialects/d.toml"
channels = 4

[instruments.load2]
driver = "modbus_load"
address = "tcp://127.0.0.1:15502"
map = "maps/load.toml"
timeout_s = 2

[instruments.tc1]
driver = "modbus_thermo"
address = "tcp://127.0.0.1:15503"
map = "maps/tc.toml"
channels = 8
unit = 3

[[channels]]
position = 2
load = "load1"
load_channel = 2
thermo = "tc1"
thermo_channel = 1

[[channels]]
position = 1
load = "load1"
load_channel = 1
thermo = "tc1"
thermo_channel = 0

[[channels]]
position = 3
load = "load2"
load_channel = 1
thermo = "tc1"
thermo_channel = 2

[limits]
temp_abort_c = 60
v_min_v = 2.5
i_max_a = 10

[screening]
features = ["ocv_v", "r0_ohm", "temp_rise_k"]
pat_k = 5

[plc]
bind = "127.0.0.1"
port = 15020

[panel]
port = 8081
)";

/// A temporary directory holding a station's referenced files.
struct Dir {
    eol::test::TempDir tmp;
    fs::path root = tmp.dir;
    Dir() {
        // Referenced files must load too: the shipped ones stand in.
        const fs::path shipped = EOL_CONFIG_DIR;
        fs::create_directories(root / "dialects");
        fs::create_directories(root / "maps");
        fs::copy_file(shipped / "dialects/keysight-el30000.toml", root / "dialects/d.toml");
        fs::copy_file(shipped / "maps/maynuo-m97.toml", root / "maps/load.toml");
        fs::copy_file(shipped / "maps/icpdas-et7018z.toml", root / "maps/tc.toml");
        fs::copy_file(shipped / "serial-scheme.toml", root / "serial.toml");
        write_file(root / "recipes/test.toml", kRecipe);
    }
    fs::path station(const std::string& text, const std::string& name = "station.toml") const {
        write_file(root / name, text);
        return root / name;
    }
};

/// The diagnostics of loading `text` as station.toml in `d` (fails the test if it loads).
std::vector<Diagnostic> errors_of(const Dir& d, const std::string& text) {
    try {
        load_station_config(d.station(text));
    } catch (const ConfigError& e) {
        return e.diagnostics();
    }
    FAIL("expected a ConfigError");
    return {};
}

/// The diagnostics of recipe `text` written as recipes/NAME.toml (FAIL when it loads).
std::vector<Diagnostic> recipe_errors_of(const Dir& d, const std::string& name, const std::string& text) {
    write_file(d.root / ("recipes/" + name + ".toml"), text);
    try {
        load_recipe(d.root / ("recipes/" + name + ".toml"));
    } catch (const ConfigError& e) {
        return e.diagnostics();
    }
    FAIL("expected a ConfigError");
    return {};
}

/// The test recipe with a [cell.entropy] of three points (a function: replace()
/// checks with doctest, which must not run before main).
std::string entropy_recipe() {
    return replace(kRecipe, "capacity_ah = 3.0\n",
                   "capacity_ah = 3.0\n\n[cell.entropy]\nsoc = [0.2, 0.5, 0.9]\n"
                   "ocv_v = [3.55, 3.75, 4.10]\ndu_dt_v_per_k = [-0.1e-3, 0.05e-3, 0.25e-3]\n");
}

const Diagnostic* find_key(const std::vector<Diagnostic>& ds, const std::string& key) {
    for (const auto& d : ds)
        if (d.key_path == key) return &d;
    return nullptr;
}

std::string dump(const std::vector<Diagnostic>& ds) {
    std::string s;
    for (const auto& d : ds) s += d.to_string() + "\n";
    return s;
}

/// The single diagnostic for `key`; fails when there is none.
Diagnostic one(const std::vector<Diagnostic>& ds, const std::string& key) {
    const Diagnostic* d = find_key(ds, key);
    REQUIRE_MESSAGE(d != nullptr, "no diagnostic for " << key << " in:\n" << dump(ds));
    return *d;
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

struct Run {
    int rc;
    std::string out, err;
};

/// `eolstation ARGS` through the shell, stdout and stderr apart.
Run run_cli(const std::string& args) {
    const auto r = eol::test::run_process({"/bin/sh", "-c", std::string("'") + EOL_CLI + "' " + args});
    REQUIRE_FALSE(r.signaled);
    return {r.exit, r.out, r.err};
}

}  // namespace

TEST_CASE("config: a valid station file loads with resolved paths, defaults and sorted positions") {
    Dir d;
    const StationConfig c = load_station_config(d.station(kStation));
    CHECK(c.station_id == "T-1");
    REQUIRE(c.instruments.size() == 3);
    const InstrumentConfig* load1 = c.find_instrument("load1");
    REQUIRE(load1);
    CHECK(load1->driver == InstrumentConfig::Driver::scpi_load);
    CHECK(load1->channels == 4);
    CHECK(load1->endpoint.port == 15025);
    CHECK(load1->endpoint.host == "127.0.0.1");
    CHECK(load1->definition == (d.root / "dialects/d.toml").lexically_normal());
    CHECK(load1->timeout_s == doctest::Approx(1.0));          // default
    CHECK(load1->connect_timeout_s == doctest::Approx(3.0));  // default
    const InstrumentConfig* load2 = c.find_instrument("load2");
    REQUIRE(load2);
    CHECK(load2->timeout_s == doctest::Approx(2.0));  // an integer is accepted for a float
    CHECK(load2->channels == 1);
    CHECK(c.find_instrument("tc1")->unit == 3);
    CHECK(c.find_instrument("tc1")->is_thermo());

    REQUIRE(c.channels.size() == 3);
    CHECK(c.channels[0].position == 1);
    CHECK(c.channels[1].position == 2);
    CHECK(c.channels[2].load == "load2");
    REQUIRE(c.ambient);
    CHECK(c.ambient->thermo == "tc1");
    CHECK(c.ambient->channel == 7);

    CHECK(c.store == (d.root / "results.db").lexically_normal());
    CHECK(c.serial_scheme == (d.root / "serial.toml").lexically_normal());
    CHECK(c.plc.port == 15020);
    CHECK(c.plc.heartbeat_timeout_s == doctest::Approx(2.0));
    CHECK(c.panel.port == 8081);
    CHECK(c.panel.bind == "127.0.0.1");
    CHECK(c.panel.active());            // a [panel] table: serve starts the panel
    CHECK(c.panel.language == "en");    // the default language
    CHECK(c.screening.pat_k == doctest::Approx(5.0));
    CHECK(c.screening.pat_min_count == 20);
    CHECK(c.screening.features == std::vector<std::string>{"ocv_v", "r0_ohm", "temp_rise_k"});
    CHECK(c.sim.time_scale == doctest::Approx(1.0));  // [sim] absent: defaults

    CHECK(c.recipe.name == "test-recipe");
    REQUIRE(c.recipe.steps.size() == 4);
    CHECK(c.recipe.steps[1].kind() == StepKind::dcir);
    const auto& dcir = std::get<DcirParams>(c.recipe.steps[1].params);
    CHECK(dcir.low_a == doctest::Approx(0.6));   // 0.2 C of 3 Ah (IEC 61960)
    CHECK(dcir.high_a == doctest::Approx(3.0));  // 1 C
    CHECK(dcir.low_s == doctest::Approx(10.0));
    CHECK(dcir.high_s == doctest::Approx(1.0));
    const auto& pulse = std::get<PulseParams>(c.recipe.steps[2].params);
    CHECK(pulse.points() == 7100);  // (1 s pre + 10 s + 60 s) / 10 ms
    CHECK(c.recipe.steps[2].line == line_of(kRecipe, "name = \"pulse\"") - 1);
    const MeasurementSpec* r0 = c.recipe.find_measurement("r0_ohm");
    REQUIRE(r0);
    CHECK(r0->unit == "ohm");
    CHECK(!r0->low);
    CHECK(*r0->high == doctest::Approx(0.045));
}

TEST_CASE("config: paths resolve against the config file's directory, not the working directory") {
    Dir d;
    struct CwdGuard {
        fs::path saved = fs::current_path();
        ~CwdGuard() { fs::current_path(saved); }
    } guard;
    fs::current_path(fs::temp_directory_path());
    const fs::path rel = fs::relative(d.station(kStation));
    REQUIRE(rel.is_relative());
    StationConfig c;
    CHECK_NOTHROW(c = load_station_config(rel));
    CHECK(fs::equivalent(c.recipe_file, d.root / "recipes/test.toml"));
    CHECK(fs::equivalent(c.find_instrument("tc1")->definition, d.root / "maps/tc.toml"));
}

TEST_CASE("config: an unknown key is reported at its line and column with a did-you-mean") {
    Dir d;
    const std::string text = replace(kStation, "timeout_s = 2", "timout_s = 2");
    const auto ds = errors_of(d, text);
    const Diagnostic e = one(ds, "instruments.load2.timout_s");
    CHECK(e.line == line_of(text, "timout_s"));
    CHECK(e.column == 1);
    CHECK(contains(e.message, "unknown key 'timout_s'"));
    CHECK(contains(e.message, "did you mean 'timeout_s'?"));
    CHECK(e.file == (d.root / "station.toml").lexically_normal().string());
    CHECK(ds.size() == 1);
}

TEST_CASE("config: an unknown key with no close match lists the expected keys") {
    Dir d;
    const std::string text = replace(kStation, "[panel]\n", "[panel]\nwebsocket = true\n");
    const Diagnostic e = one(errors_of(d, text), "panel.websocket");
    CHECK(contains(e.message, "unknown key 'websocket'"));
    CHECK(contains(e.message, "expected one of: bind, enabled, language, port"));
}

TEST_CASE("config: wrong types name the expected and the actual type") {
    Dir d;
    std::string text = replace(kStation, "channels = 8", "channels = \"8\"");
    text = replace(text, "port = 8081", "port = 8081.5");
    text = replace(text, "v_min_v = 2.5", "v_min_v = \"2.5\"");
    const auto ds = errors_of(d, text);
    const Diagnostic ch = one(ds, "instruments.tc1.channels");
    CHECK(ch.message == "expected integer, got string");
    CHECK(ch.line == line_of(text, "channels = \"8\""));
    CHECK(ch.column == column_of(text, "\"8\""));
    CHECK(one(ds, "panel.port").message == "expected integer, got float");
    CHECK(one(ds, "limits.v_min_v").message == "expected number, got string");
}

TEST_CASE("config: out-of-range values are reported with the allowed range") {
    Dir d;
    std::string text = replace(kStation, "port = 15020", "port = 70000");
    text = replace(text, "port = 8081", "port = 0");
    text = replace(text, "timeout_s = 2", "timeout_s = 0");
    text = replace(text, "load_channel = 2", "load_channel = 5");  // load1 has 4
    text = replace(text, "thermo_channel = 2", "thermo_channel = 8");  // tc1 has 0..7
    text = replace(text, "thermo_channel = 1\n", "thermo_channel = 1\nthermo_offset_k = 7.5\n");  // ±5 K
    const auto ds = errors_of(d, text);
    const Diagnostic plc = one(ds, "plc.port");
    CHECK(contains(plc.message, "out of range: 70000"));
    CHECK(contains(plc.message, "1..65535"));
    CHECK(plc.line == line_of(text, "port = 70000"));
    CHECK(contains(one(ds, "panel.port").message, "out of range: 0"));
    CHECK(contains(one(ds, "instruments.load2.timeout_s").message, "must be > 0"));
    const Diagnostic lc = one(ds, "channels[0].load_channel");
    CHECK(contains(lc.message, "'load1' has 4 channels: 1..4"));
    CHECK(lc.line == line_of(text, "load_channel = 5"));
    CHECK(contains(one(ds, "channels[2].thermo_channel").message, "'tc1' has 8 channels: 0..7"));
    const Diagnostic off = one(ds, "channels[0].thermo_offset_k");
    CHECK(contains(off.message, "out of range: 7.5"));
    CHECK(off.line == line_of(text, "thermo_offset_k = 7.5"));
    CHECK(ds.size() == 6);
}

TEST_CASE("config: a missing required key is reported at the line of the table that lacks it") {
    Dir d;
    // The third [[channels]] loses its thermo; [limits] loses i_max_a.
    std::string text = replace(kStation, "thermo = \"tc1\"\nthermo_channel = 2\n", "thermo_channel = 2\n");
    text = replace(text, "i_max_a = 10\n", "");
    const auto ds = errors_of(d, text);
    const Diagnostic th = one(ds, "channels[2].thermo");
    CHECK(th.message == "missing required key 'thermo' in channels[2]");
    CHECK(th.line == line_of(text, "[[channels]]\nposition = 3"));
    const Diagnostic lim = one(ds, "limits.i_max_a");
    CHECK(lim.message == "missing required key 'i_max_a' in [limits]");
    CHECK(lim.line == line_of(text, "[limits]"));
}

TEST_CASE("config: a missing table is reported at top level") {
    Dir d;
    const auto pos = kStation.find("[screening]");
    const std::string text = kStation.substr(0, pos) + kStation.substr(kStation.find("[plc]"));
    const Diagnostic e = one(errors_of(d, text), "screening");
    CHECK(e.message == "missing required key 'screening' at top level");
}

TEST_CASE("config: references to instruments that do not exist or are the wrong kind") {
    Dir d;
    std::string text = replace(kStation, "load = \"load2\"", "load = \"lod2\"");
    text = replace(text, "load = \"load1\"\nload_channel = 1", "load = \"tc1\"\nload_channel = 1");
    text = replace(text, "ambient = { thermo = \"tc1\"", "ambient = { thermo = \"load1\"");
    const auto ds = errors_of(d, text);
    const Diagnostic missing = one(ds, "channels[2].load");
    CHECK(contains(missing.message, "no instrument named 'lod2'"));
    CHECK(contains(missing.message, "did you mean 'load2'?"));
    CHECK(missing.line == line_of(text, "\"lod2\""));
    const Diagnostic kind = one(ds, "channels[1].load");
    CHECK(contains(kind.message, "'tc1' is a modbus_thermo, not a load"));
    CHECK(contains(one(ds, "station.ambient.thermo").message,
                   "'load1' is a scpi_load, not a thermocouple reader"));
}

TEST_CASE("config: duplicate positions and doubly used channels") {
    Dir d;
    std::string text = replace(kStation, "position = 3", "position = 2");
    text = replace(text, "thermo_channel = 1", "thermo_channel = 0");
    const auto ds = errors_of(d, text);
    const Diagnostic pos = one(ds, "channels[2].position");
    CHECK(contains(pos.message, "duplicate position 2"));
    CHECK(contains(pos.message, "first at line " + std::to_string(line_of(text, "[[channels]]"))));
    CHECK(contains(one(ds, "channels[1].thermo_channel").message,
                   "tc1 channel 0 is already used by position 2"));
}

TEST_CASE("config: files that do not exist are named with where they were looked for") {
    Dir d;
    fs::remove(d.root / "maps/tc.toml");
    fs::remove(d.root / "serial.toml");
    const auto ds = errors_of(d, kStation);
    const Diagnostic map = one(ds, "instruments.tc1.map");
    CHECK(contains(map.message, "register map 'maps/tc.toml' does not exist"));
    CHECK(contains(map.message, (d.root / "maps/tc.toml").string()));
    CHECK(map.line == line_of(kStation, "map = \"maps/tc.toml\""));
    CHECK(contains(one(ds, "station.serial_scheme").message, "serial scheme 'serial.toml' does not exist"));
    CHECK(ds.size() == 2);

    fs::remove(d.root / "recipes/test.toml");
    const auto ds2 = errors_of(d, kStation);
    CHECK(contains(one(ds2, "station.recipe").message, "recipe file 'recipes/test.toml' does not exist"));
    // Without a recipe, features cannot be checked, and are not reported.
    CHECK(find_key(ds2, "screening.features[0]") == nullptr);

    std::string text = replace(kStation, "dialect = \"dialects/d.toml\"", "map = \"dialects/d.toml\"");
    CHECK(contains(one(errors_of(d, text), "instruments.load1.map").message,
                   "scpi_load takes a 'dialect' file, not a 'map'"));
}

TEST_CASE("config: a station file that does not exist") {
    Dir d;
    try {
        load_station_config(d.root / "nope.toml");
        FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
        REQUIRE(e.diagnostics().size() == 1);
        CHECK(e.diagnostics()[0].message == "station file does not exist");
        CHECK(contains(e.what(), "nope.toml: station file does not exist"));
    }
}

TEST_CASE("config: a TOML syntax error is reported with line and column") {
    Dir d;
    const std::string text = replace(kStation, "channels = 4", "channels = = 4");
    const auto ds = errors_of(d, text);
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].line == line_of(text, "channels = = 4"));
    CHECK(ds[0].column >= 12);
    CHECK(contains(ds[0].message, "TOML syntax"));

    const std::string dup = replace(kStation, "[panel]\n", "[panel]\nport = 1\n");  // port twice
    const auto ds2 = errors_of(d, dup);
    REQUIRE(ds2.size() == 1);
    CHECK(ds2[0].line == line_of(dup, "port = 8081"));
}

TEST_CASE("config: invalid addresses and addresses the driver cannot use") {
    Dir d;
    std::string text = replace(kStation, "tcp://127.0.0.1:15025", "rtu:///dev/ttyUSB0?baud=9600");
    text = replace(text, "tcp://127.0.0.1:15502", "tcp://127.0.0.1:port");
    const auto ds = errors_of(d, text);
    CHECK(contains(one(ds, "instruments.load1.address").message,
                   "scpi_load needs a tcp:// or serial:// address"));
    const Diagnostic bad = one(ds, "instruments.load2.address");
    CHECK(contains(bad.message, "invalid address"));
    CHECK(contains(bad.message, "tcp://127.0.0.1:port"));
}

TEST_CASE("config: enumerations suggest the closest valid value") {
    Dir d;
    const std::string text = replace(kStation, "driver = \"modbus_load\"", "driver = \"modbus-load\"");
    const Diagnostic e = one(errors_of(d, text), "instruments.load2.driver");
    CHECK(contains(e.message, "unknown value 'modbus-load' (did you mean 'modbus_load'?)"));
}

TEST_CASE("config: the panel's language is en or zh-CN, a typo named at its line with a guess") {
    Dir d;
    std::string text = replace(kStation, "[panel]\n", "[panel]\nlanguage = \"zh-CN\"\nenabled = false\n");
    const eol::station::StationConfig ok = eol::station::load_station_config(d.station(text));
    CHECK(ok.panel.language == "zh-CN");
    CHECK(ok.panel.present);
    CHECK(!ok.panel.active());  // enabled = false: no server
    text = replace(kStation, "[panel]\n", "[panel]\nlanguage = \"zh_CN\"\n");
    const auto ds = errors_of(d, text);
    const Diagnostic e = one(ds, "panel.language");
    CHECK(e.line == line_of(text, "language = "));
    CHECK(contains(e.message, "unknown value 'zh_CN'"));
    CHECK(contains(e.message, "did you mean 'zh-CN'?"));
    CHECK(contains(e.message, "expected one of: en, zh-CN"));
}

TEST_CASE("config: port clashes between the PLC, the panel and loopback instruments") {
    Dir d;
    std::string text = replace(kStation, "port = 8081", "port = 15020");
    text = replace(text, "tcp://127.0.0.1:15503", "tcp://127.0.0.1:15502");
    text = replace(text, "unit = 3", "unit = 1");  // same gateway and unit id as load2
    const auto ds = errors_of(d, text);
    CHECK(contains(one(ds, "panel.port").message, "port 15020 is also plc.port"));
    CHECK(contains(one(ds, "instruments.tc1.address").message,
                   "127.0.0.1:15502 is also the address of 'load2'"));
}

TEST_CASE("config: screening features must be measurements of the recipe") {
    Dir d;
    const std::string text = replace(kStation, "\"r0_ohm\", \"temp_rise_k\"", "\"r0_ohms\", 3");
    const auto ds = errors_of(d, text);
    const Diagnostic f = one(ds, "screening.features[1]");
    CHECK(contains(f.message, "'r0_ohms' is not a measurement of recipe 'test-recipe'"));
    CHECK(contains(f.message, "did you mean 'r0_ohm'?"));
    CHECK(one(ds, "screening.features[2]").message == "expected string, got integer");
}

TEST_CASE("config: several errors in one file are reported at once, in file order") {
    Dir d;
    std::string text = replace(kStation, "id = \"T-1\"", "id = 1");
    text = replace(text, "channels = 4", "channels = 4\nvendor = \"x\"");
    text = replace(text, "load = \"load2\"", "load = \"nothing\"");
    text = replace(text, "v_min_v = 2.5", "v_min_v = -2.5");
    text = replace(text, "pat_k = 5", "pat_k = 50");
    text += "\n[sim]\nproduction_date = \"2023-02-30\"\nlot = \"LOT-1\"\n";
    const auto ds = errors_of(d, text);
    CHECK_MESSAGE(ds.size() == 7, dump(ds));
    CHECK(one(ds, "station.id").message == "expected string, got integer");
    CHECK(contains(one(ds, "instruments.load1.vendor").message, "unknown key"));
    CHECK(contains(one(ds, "channels[2].load").message, "no instrument named 'nothing'"));
    CHECK(contains(one(ds, "limits.v_min_v").message, "out of range"));
    CHECK(contains(one(ds, "screening.pat_k").message, "out of range: 50"));
    CHECK(one(ds, "sim.production_date").message == "not a calendar date");
    CHECK(contains(one(ds, "sim.lot").message, "0-9 and A-Z without I and O"));
    for (std::size_t i = 1; i < ds.size(); ++i) CHECK(ds[i - 1].line <= ds[i].line);

    // what(): every diagnostic, one per line, as file:line:col: key: message.
    try {
        load_station_config(d.station(text));
    } catch (const ConfigError& e) {
        const std::string what = e.what();
        CHECK(std::count(what.begin(), what.end(), '\n') == 6);
        const std::string file = (d.root / "station.toml").lexically_normal().string();
        CHECK(contains(what, file + ":" + std::to_string(line_of(text, "id = 1")) + ":6: station.id: "
                                                                                    "expected string, got integer"));
    }
}

TEST_CASE("config: recipe errors name the recipe file and the step") {
    Dir d;
    std::string r = replace(kRecipe, "kind = \"heat\"", "kind = \"heet\"");
    r = replace(r, "name = \"dcir_ohm\"", "name = \"dcir_ohm\"\n  quantity = \"r0_ohm\"");
    r = replace(r, "sample_interval_s = 0.01", "sample_interval_s = 20");
    r = replace(r, "name = \"r0_ohm\"\n  high = 0.045", "name = \"ocv_v\"\n  quantity = \"r0_ohm\"\n  unit = \"mohm\"\n  low = 0.05\n  high = 0.045");
    write_file(d.root / "recipes/test.toml", r);
    const std::string recipe_file = (d.root / "recipes/test.toml").lexically_normal().string();
    try {
        load_recipe(d.root / "recipes/test.toml");
        FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
        const auto& ds = e.diagnostics();
        for (const auto& x : ds) CHECK(x.file == recipe_file);
        const Diagnostic kind = one(ds, "steps[3].kind");
        CHECK(contains(kind.message, "unknown value 'heet' (did you mean 'heat'?)"));
        CHECK(kind.line == line_of(r, "\"heet\""));
        CHECK(contains(one(ds, "steps[1].measurements[0].quantity").message,
                       "a dcir step cannot measure 'r0_ohm'; it measures: dcir_ohm"));
        CHECK(contains(one(ds, "steps[2].sample_interval_s").message, "out of range: 20"));
        CHECK(contains(one(ds, "steps[2].measurements[0].name").message,
                       "duplicate measurement name 'ocv_v'"));
        CHECK(contains(one(ds, "steps[2].measurements[0].unit").message,
                       "unit of r0_ohm is 'ohm', not 'mohm'"));
        CHECK(contains(one(ds, "steps[2].measurements[0].low").message, "low 0.05 is above high 0.045"));
        CHECK_MESSAGE(ds.size() == 6, dump(ds));
    }
}

TEST_CASE("config: recipe errors are reported together with the station's") {
    Dir d;
    write_file(d.root / "recipes/test.toml", replace(kRecipe, "capacity_ah = 3.0", "capacity_ah = 3.0\nchemistry = \"NMC\""));
    const std::string text = replace(kStation, "unit = 3", "unit = 300");
    const auto ds = errors_of(d, text);
    REQUIRE(ds.size() == 2);
    CHECK(ds[0].key_path == "instruments.tc1.unit");  // the station file comes first
    CHECK(ds[1].key_path == "cell.chemistry");
    CHECK(contains(ds[1].file, "recipes/test.toml"));
}

TEST_CASE("config: a recipe step may not draw more than the station's safety current") {
    Dir d;
    const std::string text = replace(kStation, "i_max_a = 10", "i_max_a = 5");
    const auto ds = errors_of(d, text);
    const Diagnostic e = one(ds, "steps[2].current_a");
    CHECK(contains(e.message, "step 'pulse' draws 6 A, above limits.i_max_a = 5 A"));
    CHECK(e.line == line_of(kRecipe, "[[steps]]\nname = \"pulse\""));
    CHECK(ds.size() == 1);
}

TEST_CASE("config: the shipped example station and recipe load") {
    const fs::path example = fs::path(EOL_CONFIG_DIR) / "station.example.toml";
    StationConfig c;
    try {
        c = load_station_config(example);
    } catch (const ConfigError& e) {
        FAIL(e.what());
    }
    CHECK(c.station_id == "EOL-01");
    REQUIRE(c.find_instrument("load1"));
    CHECK(c.find_instrument("load1")->driver == InstrumentConfig::Driver::scpi_load);
    CHECK(c.find_instrument("load1")->endpoint.host == "127.0.0.1");
    CHECK(c.find_instrument("load2")->driver == InstrumentConfig::Driver::modbus_load);
    CHECK(c.find_instrument("tc1")->channels == 8);
    CHECK(c.channels.size() >= 4);
    CHECK(c.channels.size() <= 8);
    CHECK(c.plc.port == 15020);
    CHECK(c.recipe.name == "eol-18650");
    CHECK(c.store.filename() == "eolstation.db");
    CHECK(fs::exists(c.serial_scheme));
    for (const auto& i : c.instruments) CHECK(fs::exists(i.definition));

    const Recipe r = load_recipe(fs::path(EOL_CONFIG_DIR) / "recipes/eol-18650.toml");
    CHECK(r.capacity_ah == doctest::Approx(3.0));
    bool has_pulse = false, has_heat = false;
    for (const auto& s : r.steps) {
        if (const auto* p = std::get_if<PulseParams>(&s.params)) {
            has_pulse = true;
            CHECK(p->sample_interval_s >= 0.01);
            CHECK(p->sample_interval_s <= 0.1);
            CHECK(p->relaxation_s >= 30);
        }
        if (const auto* h = std::get_if<HeatParams>(&s.params)) {
            has_heat = true;
            CHECK(h->cooling_s > 0);
        }
    }
    CHECK(has_pulse);
    CHECK(has_heat);
}

TEST_CASE("config: eolstation config check exits 2 with every diagnostic on stderr") {
    Dir d;
    std::string text = replace(kStation, "timeout_s = 2", "timout_s = 2");
    text = replace(text, "port = 15020", "port = 70000");
    const fs::path file = d.station(text, "bad.toml");
    const Run bad = run_cli("config check '" + file.string() + "'");
    CHECK(bad.rc == 2);
    const std::string f = file.lexically_normal().string();
    CHECK(contains(bad.err, f + ":" + std::to_string(line_of(text, "timout_s")) +
                                ":1: instruments.load2.timout_s: unknown key 'timout_s' (did you "
                                "mean 'timeout_s'?)"));
    CHECK(contains(bad.err, f + ":" + std::to_string(line_of(text, "port = 70000")) + ":8: plc.port: "));
    CHECK(contains(bad.err, "2 errors"));

    const Run bad_json = run_cli("config check --json '" + file.string() + "'");
    CHECK(bad_json.rc == 2);
    const auto j = nlohmann::json::parse(bad_json.out);
    CHECK(j["valid"] == false);
    CHECK(j["errors"].size() == 2);

    const Run good = run_cli("config check '" + d.station(kStation).string() + "'");
    CHECK(good.rc == 0);
    CHECK(contains(good.out, "T-1"));
    CHECK(contains(good.out, "load1"));
    CHECK(contains(good.out, "test-recipe"));
    CHECK(good.err.empty());

    const Run good_json = run_cli("config check --json '" + d.station(kStation).string() + "'");
    CHECK(good_json.rc == 0);
    const auto g = nlohmann::json::parse(good_json.out);
    CHECK(g["station_id"] == "T-1");
    CHECK(g["channels"].size() == 3);
    CHECK(g["plc"]["port"] == 15020);

    const Run recipe = run_cli("config check --recipe '" + (d.root / "recipes/test.toml").string() + "'");
    CHECK(recipe.rc == 0);
    CHECK(contains(recipe.out, "valid"));
}

TEST_CASE("config: a spec limit in [limits] is refused and pointed to the recipe") {
    Dir d;
    const std::string text = replace(kStation, "temp_abort_c = 60", "temp_abort_c = 60\nr0_max_ohm = 0.045");
    const auto ds = errors_of(d, text);
    const Diagnostic& e = one(ds, "limits.r0_max_ohm");
    CHECK(contains(e.message, "spec limit"));
    CHECK(contains(e.message, "[[steps.measurements]]"));
    CHECK(e.line == line_of(text, "r0_max_ohm = 0.045"));
}

TEST_CASE("config: a referenced dialect, map or serial scheme that does not load is an error naming its own file:line") {
    Dir d;
    write_file(d.root / "dialects/d.toml", "[commands\nbroken = 1\n");
    write_file(d.root / "maps/tc.toml", std::string("\x01\x02\xff random bytes\n"));
    write_file(d.root / "serial.toml", "");
    const auto ds = errors_of(d, kStation);
    const Diagnostic& dialect = one(ds, "instruments.load1.dialect");
    CHECK(contains(dialect.message, "dialect file is not usable"));
    CHECK(contains(dialect.message, (d.root / "dialects/d.toml").string() + ":1"));
    CHECK(contains(one(ds, "instruments.tc1.map").message, "register map is not usable"));
    CHECK(contains(one(ds, "station.serial_scheme").message, "serial scheme is not usable"));
    // A store path that names a folder.
    fs::create_directories(d.root / "results.db");
    CHECK(contains(one(errors_of(d, kStation), "station.store").message, "is not a regular file (a directory)"));
}

TEST_CASE("hostile: deeply nested or huge TOML in a station file, a recipe or a serial scheme is an error at its place, not a crash") {
    Dir d;
    const std::string deep = "[" + [] {
        std::string s = "a";
        for (int k = 0; k < 100000; ++k) s += ".a";
        return s;
    }() + "]\n";
    // The station file itself.
    auto ds = errors_of(d, deep);
    REQUIRE_FALSE(ds.empty());
    CHECK(ds[0].line == 1);
    CHECK(contains(ds[0].message, "nesting deeper than 32"));
    // Its recipe.
    write_file(d.root / "recipes/test.toml", "x = " + std::string(50000, '[') + "\n");
    ds = errors_of(d, kStation);
    bool recipe_named = false;
    for (const auto& e : ds) recipe_named = recipe_named || (contains(e.file, "test.toml") && contains(e.message, "nesting"));
    CHECK(recipe_named);
    // A serial scheme of 2 MiB.
    write_file(d.root / "recipes/test.toml", kRecipe);
    write_file(d.root / "serial.toml", "# " + std::string(2u << 20, 'x') + "\n");
    CHECK(contains(one(errors_of(d, kStation), "station.serial_scheme").message, "serial scheme is not usable"));
}

TEST_CASE("hostile: an over-long station id names the limit and does not echo the text back") {
    Dir d;
    const std::string huge(3u << 20 >> 4, 'X');  // 196,608 characters
    const auto ds = errors_of(d, replace(kStation, "id = \"T-1\"", "id = \"" + huge + "\""));
    const Diagnostic& e = one(ds, "station.id");
    CHECK(contains(e.message, "196608 characters long; at most 64"));
    CHECK(e.message.size() < 200);
}

TEST_CASE("config: [plc] keys for the PLC server: defaults, values, and errors at their lines") {
    Dir d;
    {
        const StationConfig c = load_station_config(d.station(kStation));
        CHECK(c.plc.active());
        CHECK(c.plc.unit == 1);
        CHECK(c.plc.allow == std::vector<std::string>{"127.0.0.1", "::1"});  // loopback only by default
        CHECK(c.plc.serial_byte_order == PlcConfig::ByteOrder::high_first);
        CHECK(c.plc.recipe_id == 1);
        CHECK(c.plc.max_clients == 8);
        CHECK(c.plc.idle_timeout_s == doctest::Approx(60));
    }
    {
        const std::string text = replace(kStation, "port = 15020\n",
                                         "port = 15020\nenabled = false\nallow = [\"10.1.2.0/24\", \"fd00::/8\", "
                                         "\"192.168.0.7\"]\nserial_byte_order = \"low_first\"\nrecipe_id = 7\n"
                                         "max_clients = 2\nidle_timeout_s = 5\nunit = 3\nheartbeat_timeout_s = 0.5\n");
        const StationConfig c = load_station_config(d.station(text));
        CHECK(c.plc.present);
        CHECK(!c.plc.active());
        CHECK(c.plc.allow == std::vector<std::string>{"10.1.2.0/24", "fd00::/8", "192.168.0.7"});
        CHECK(c.plc.serial_byte_order == PlcConfig::ByteOrder::low_first);
        CHECK(c.plc.recipe_id == 7);
        CHECK(c.plc.max_clients == 2);
        CHECK(c.plc.unit == 3);
        CHECK(c.plc.heartbeat_timeout_s == doctest::Approx(0.5));
    }
    {
        // No [plc] table: no server.
        const auto at = kStation.find("[plc]");
        const std::string text = kStation.substr(0, at) + kStation.substr(kStation.find("[panel]"));
        CHECK(!load_station_config(d.station(text)).plc.active());
    }
    const std::string text = replace(kStation, "port = 15020\n",
                                     "port = 15020\nenabled = \"yes\"\nallow = [\"10.1.2.0/33\", \"plc.local\", 5]\n"
                                     "serial_byte_order = \"big\"\nrecipe_id = 0\nmax_clients = 100\n"
                                     "idle_timeout_s = -1\nunit = 0\nheartbeat_timeout_s = 0\n");
    const auto ds = errors_of(d, text);
    CHECK(one(ds, "plc.enabled").message == "expected boolean (true or false), got string");
    CHECK(one(ds, "plc.enabled").line == line_of(text, "enabled = \"yes\""));
    const Diagnostic a0 = one(ds, "plc.allow[0]");
    CHECK(contains(a0.message, "expected an IP address or network"));
    CHECK(contains(a0.message, "'10.1.2.0/33'"));
    CHECK(a0.line == line_of(text, "allow = ["));
    CHECK(contains(one(ds, "plc.allow[1]").message, "'plc.local'"));
    CHECK(one(ds, "plc.allow[2]").message == "expected string, got integer");
    CHECK(contains(one(ds, "plc.serial_byte_order").message, "expected one of: high_first, low_first"));
    CHECK(contains(one(ds, "plc.recipe_id").message, "out of range: 0"));
    CHECK(contains(one(ds, "plc.max_clients").message, "1..64"));
    CHECK(contains(one(ds, "plc.idle_timeout_s").message, "out of range"));
    CHECK(contains(one(ds, "plc.unit").message, "1..247"));
    CHECK(contains(one(ds, "plc.heartbeat_timeout_s").message, "out of range"));
    CHECK(ds.size() == 10);
    // An empty allow list could never be reached by a PLC: refused.
    const auto empty = errors_of(d, replace(kStation, "port = 15020\n", "port = 15020\nallow = []\n"));
    CHECK(contains(one(empty, "plc.allow").message, "empty"));
}

// ---------------------------------------------------------------- ambient thermocouples (issue 16)
// A position's thermal fit needs the fixture's air temperature: its module's
// own `ambient_channel`, else the station's `ambient` (read through the module
// that has it), else none — P_x is then not identifiable there.

namespace {

/// kStation plus tc2 (8 channels; `tc2_extra` lines in its table) and
/// positions 4 and 5 on tc2 channels 0 and 1 (load1 channels 3 and 4).
std::string with_tc2(const std::string& station, const std::string& tc2_extra) {
    std::string text = replace(station, "[[channels]]\nposition = 2",
                               "[instruments.tc2]\ndriver = \"modbus_thermo\"\naddress = \"tcp://127.0.0.1:15504\"\n"
                               "map = \"maps/tc.toml\"\nchannels = 8\n" + tc2_extra + "\n"
                               "[[channels]]\nposition = 4\nload = \"load1\"\nload_channel = 3\nthermo = \"tc2\"\n"
                               "thermo_channel = 0\n\n"
                               "[[channels]]\nposition = 5\nload = \"load1\"\nload_channel = 4\nthermo = \"tc2\"\n"
                               "thermo_channel = 1\n\n"
                               "[[channels]]\nposition = 2");
    return text;
}

std::string ambient_text(const StationConfig& c, int position) {
    const ChannelConfig* ch = c.find_position(position);
    REQUIRE(ch != nullptr);
    const auto a = c.ambient_for(*ch);
    return a ? a->thermo + "/" + std::to_string(a->channel) : "none";
}

}  // namespace

TEST_CASE("config: each position's ambient — its module's ambient_channel, else the station's across modules, else none") {
    Dir d;
    {
        // The station ambient is on tc1: tc2's positions read it across modules.
        const StationConfig c = load_station_config(d.station(with_tc2(kStation, "")));
        CHECK(ambient_text(c, 1) == "tc1/7");
        CHECK(ambient_text(c, 4) == "tc1/7");
        CHECK(ambient_text(c, 5) == "tc1/7");
        CHECK(c.is_ambient_input("tc1", 7));
        CHECK_FALSE(c.is_ambient_input("tc2", 7));
    }
    {
        // tc2's own ambient channel wins for its positions.
        const StationConfig c = load_station_config(d.station(with_tc2(kStation, "ambient_channel = 7\n")));
        CHECK(ambient_text(c, 1) == "tc1/7");
        CHECK(ambient_text(c, 4) == "tc2/7");
        CHECK(c.find_instrument("tc2")->ambient_channel == 7);
        CHECK(c.is_ambient_input("tc2", 7));
    }
    {
        // No station ambient: only tc2's positions have one.
        const std::string text = replace(with_tc2(kStation, "ambient_channel = 6\n"),
                                         "ambient = { thermo = \"tc1\", channel = 7 }\n", "");
        const StationConfig c = load_station_config(d.station(text));
        CHECK(ambient_text(c, 1) == "none");
        CHECK(ambient_text(c, 3) == "none");
        CHECK(ambient_text(c, 4) == "tc2/6");
        CHECK(ambient_text(c, 5) == "tc2/6");
    }
}

TEST_CASE("hostile: config: bad ambient references are reported at their line") {
    Dir d;
    std::string text = with_tc2(kStation, "ambient_channel = 1\n");  // position 5's thermocouple
    text = replace(text, "channels = 4\n", "channels = 4\nambient_channel = 0\n");  // on a load
    text = replace(text, "unit = 3\n", "unit = 3\nambient_channel = 8\n");       // tc1 has 0..7
    text = replace(text, "thermo_channel = 2", "thermo_channel = 7");              // the station ambient
    const auto ds = errors_of(d, text);
    INFO(dump(ds));
    const Diagnostic on_load = one(ds, "instruments.load1.ambient_channel");
    CHECK(contains(on_load.message, "applies to thermocouple modules (modbus_thermo), not to a scpi_load"));
    CHECK(on_load.line == line_of(text, "ambient_channel = 0"));
    const Diagnostic range = one(ds, "instruments.tc1.ambient_channel");
    CHECK(contains(range.message, "out of range: 8 ('tc1' has 8 channels: 0..7)"));
    CHECK(range.line == line_of(text, "ambient_channel = 8"));
    // The 5th [[channels]] table in the file is position 5 (on tc2 channel 1, tc2's ambient).
    const Diagnostic own = one(ds, "channels[1].thermo_channel");
    CHECK(contains(own.message, "tc2 channel 1 is the ambient sensor (instruments.tc2.ambient_channel)"));
    CHECK(own.line == line_of(text, "thermo_channel = 1\n\n[[channels]]\nposition = 2"));
    const Diagnostic station = one(ds, "channels[4].thermo_channel");
    CHECK(contains(station.message, "tc1 channel 7 is the ambient sensor (station.ambient)"));
    CHECK(station.line == line_of(text, "thermo_channel = 7"));
    CHECK(ds.size() == 4);
}

TEST_CASE("hostile: config: a recipe that measures p_x_w is refused at positions that cannot measure P_x") {
    Dir d;
    write_file(d.root / "recipes/px.toml", kRecipe + "  [[steps.measurements]]\n  name = \"p_x_w\"\n  high = 0.05\n");
    const std::string base = replace(with_tc2(kStation, ""), "recipes/test.toml", "recipes/px.toml");
    // With the station ambient every position reaches one (tc2's across modules): valid.
    CHECK(load_station_config(d.station(base)).channels.size() == 5);
    // Without it, every position is refused at its [[channels]] table.
    const std::string text = replace(base, "ambient = { thermo = \"tc1\", channel = 7 }\n", "");
    const auto ds = errors_of(d, text);
    INFO(dump(ds));
    REQUIRE(ds.size() == 5);
    for (const Diagnostic& e : ds) {
        CHECK(e.key_path == "channels");
        CHECK(contains(e.message, "cannot measure P_x: no ambient thermocouple reachable"));
        CHECK(contains(e.message, "measures p_x_w (<= 0.05 W) and every cell there would end 'not measured'"));
    }
    CHECK(contains(ds[0].message, "position 4"));  // the first [[channels]] table in the file
    CHECK(ds[0].line == line_of(text, "[[channels]]\nposition = 4"));
    // An ambient on tc2 alone: tc1's three positions are still refused.
    const auto tc1_only = errors_of(d, replace(text, "channels = 8\n\n[[channels]]\nposition = 4",
                                               "channels = 8\nambient_channel = 7\n\n[[channels]]\nposition = 4"));
    CHECK(tc1_only.size() == 3);
    for (const Diagnostic& e : tc1_only) CHECK(contains(e.message, "('tc1' has no ambient_channel"));
}

TEST_CASE("config: config check says which positions cannot measure P_x") {
    Dir d;
    std::string text = replace(with_tc2(kStation, ""), "ambient = { thermo = \"tc1\", channel = 7 }\n", "");
    text = replace(text, "unit = 3\n", "unit = 3\nambient_channel = 7\n");  // tc1's own; tc2 has none
    const Run r = run_cli("config check '" + d.station(text).string() + "'");
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(contains(r.out, "p_x_w        NOT identifiable at positions 4, 5 (no ambient thermocouple reachable)"));
    CHECK(contains(r.out, "tc1/0         tc1/7\n"));
    CHECK(contains(r.out, "tc2/0         none\n"));
    CHECK(r.err.empty());  // neither the recipe nor screening uses P_x here
    // Screening on P_x: a warning naming the positions, still valid.
    const Run w = run_cli("config check '" +
                          d.station(replace(text, "\"temp_rise_k\"]", "\"temp_rise_k\", \"p_x_mw\"]")).string() + "'");
    CHECK(w.rc == 0);
    CHECK(contains(w.err, "warning: P_x is not identifiable at positions 4, 5 (no ambient thermocouple): screening "
                          "feature p_x_mw will be missing for their cells"));
    const Run j = run_cli("config check --json '" + d.station(text).string() + "'");
    REQUIRE(j.rc == 0);
    const auto js = nlohmann::json::parse(j.out);
    for (const auto& ch : js["channels"]) {
        CAPTURE(ch.dump());
        const bool tc2 = ch["thermo"] == "tc2";
        CHECK(ch["p_x_identifiable"] == !tc2);
        if (tc2) CHECK(ch["ambient"].is_null());
        else CHECK(ch["ambient"]["channel"] == 7);
    }
    // With the station ambient on tc1, tc2's positions read it through tc1.
    const Run across = run_cli("config check '" + d.station(with_tc2(kStation, "")).string() + "'");
    CHECK(contains(across.out, "tc2/0         tc1/7 (read through tc1)"));
    CHECK(contains(across.out, "p_x_w        measurable at every position"));
}

TEST_CASE("config: [cell.entropy]: read, interpolated, shown by config check") {
    Dir d;
    const std::string good = entropy_recipe();
    write_file(d.root / "recipes/test.toml", good);
    const Recipe r = load_recipe(d.root / "recipes/test.toml");
    REQUIRE(r.entropy);
    CHECK(r.entropy->line == line_of(good, "[cell.entropy]"));
    CHECK(r.entropy->soc_at(3.65) == doctest::Approx(0.35));       // between points
    CHECK(r.entropy->soc_at(3.0) == doctest::Approx(0.2));         // clamped below
    CHECK(r.entropy->du_dt_at(0.7) == doctest::Approx(0.15e-3));   // between points
    CHECK(r.entropy->du_dt_at(1.0) == doctest::Approx(0.25e-3));   // clamped above
    const Run c = run_cli("config check '" + d.station(kStation).string() + "'");
    INFO(c.out << c.err);
    CHECK(c.rc == 0);
    CHECK(contains(c.out, "entropy      dU/dT -0.10 … +0.25 mV/K over SoC 0.2–0.9 (OCV 3.550–4.100 V, 3 points)"));
    const Run j = run_cli("config check --json '" + d.station(kStation).string() + "'");
    REQUIRE(j.rc == 0);
    const auto js = nlohmann::json::parse(j.out);
    CHECK(js["recipe"]["entropy"]["ocv_v"].size() == 3);
    CHECK(js["recipe"]["entropy"]["du_dt_v_per_k"][2].get<double>() == doctest::Approx(0.25e-3));
    // The shipped recipes declare it.
    CHECK(eol::test::shipped_recipe("eol-18650").entropy);
}

TEST_CASE("hostile: config [cell.entropy]: malformed tables are refused naming the element and its line") {
    Dir d;
    // Errors at their lines: a soc not increasing, a value out of range, a
    // wrong type, arrays of different lengths, an unknown key.
    const std::string bad_table = "capacity_ah = 3.0\n\n[cell.entropy]\nsoc = [0.2, 0.2, 0.9]\nocv_v = [3.55, 3.75, 9]\n"
                                  "du_dt_v_per_k = [-0.1e-3, \"x\", 0.25e-3]\nslope = 1\n";
    const std::string bad = replace(kRecipe, "capacity_ah = 3.0\n", bad_table);
    const auto ds = recipe_errors_of(d, "bad", bad);
    CHECK(contains(one(ds, "cell.entropy.soc[1]").message, "soc must increase strictly (0.2 after 0.2)"));
    CHECK(one(ds, "cell.entropy.soc[1]").line == line_of(bad, "soc = ["));
    CHECK(contains(one(ds, "cell.entropy.ocv_v[2]").message, "out of range: 9"));
    CHECK(contains(one(ds, "cell.entropy.du_dt_v_per_k[1]").message, "expected number, got string"));
    CHECK(one(ds, "cell.entropy.slope").line == line_of(bad, "slope = 1"));
    const std::string short_table = "capacity_ah = 3.0\n\n[cell.entropy]\nsoc = [0.2, 0.9]\nocv_v = [3.55, 3.75, 4.1]\n"
                                    "du_dt_v_per_k = [-0.1e-3, 0.25e-3]\n";
    const std::string uneven = replace(kRecipe, "capacity_ah = 3.0\n", short_table);
    const Diagnostic u = one(recipe_errors_of(d, "uneven", uneven), "cell.entropy.ocv_v");
    CHECK(contains(u.message, "one value per point (soc has 2, ocv_v 3, du_dt_v_per_k 2)"));
    CHECK(u.line == line_of(uneven, "ocv_v = ["));
    // A heat step with no OCV step before it cannot read a state of charge.
    const std::string no_ocv = replace(replace(entropy_recipe(), "name = \"ocv\"\nkind = \"ocv\"\n", "name = \"ocv\"\nkind = \"rest\"\nduration_s = 1\n"),
                                       "  [[steps.measurements]]\n  name = \"ocv_v\"\n  low = 3.4\n  high = 4.2\n", "");
    const Diagnostic h = one(recipe_errors_of(d, "no_ocv", no_ocv), "steps[3]");
    CHECK(contains(h.message, "needs an ocv step before it"));
    CHECK(h.line == line_of(no_ocv, "name = \"heat\"") - 1);
}

TEST_CASE("config: a heat step's known entropic coefficient: read, shown by config check, errors at their lines") {
    Dir d;
    // Declared: read into the step, shown by config check (text and JSON).
    const std::string good =
        replace(kRecipe, "cooling_s = 300\n", "cooling_s = 300\nentropic_v = -0.058\nentropic_v_per_ah = 0.05\n");
    write_file(d.root / "recipes/test.toml", good);
    const Recipe r = load_recipe(d.root / "recipes/test.toml");
    const auto* h = std::get_if<HeatParams>(&r.steps.back().params);
    REQUIRE(h);
    REQUIRE(h->entropic_v);
    CHECK(*h->entropic_v == doctest::Approx(-0.058));
    REQUIRE(h->entropic_v_per_ah);
    CHECK(*h->entropic_v_per_ah == doctest::Approx(0.05));
    const Run c = run_cli("config check '" + d.station(kStation).string() + "'");
    INFO(c.out << c.err);
    CHECK(c.rc == 0);
    CHECK(contains(c.out, "reversible heat k = -58 mV +50 mV/Ah drawn given"));
    const Run j = run_cli("config check --json '" + d.station(kStation).string() + "'");
    REQUIRE(j.rc == 0);
    bool seen = false;
    const auto js = nlohmann::json::parse(j.out);
    for (const auto& st : js["recipe"]["steps"])
        if (st["name"] == "heat") {
            seen = true;
            CHECK(st["entropic_v"].get<double>() == doctest::Approx(-0.058));
            CHECK(st["entropic_v_per_ah"].get<double>() == doctest::Approx(0.05));
        }
    CHECK(seen);
    // Not declared: none (the shipped default).
    write_file(d.root / "recipes/plain.toml", kRecipe);
    const Recipe plain = load_recipe(d.root / "recipes/plain.toml");
    const auto* p = std::get_if<HeatParams>(&plain.steps.back().params);
    REQUIRE(p);
    CHECK_FALSE(p->entropic_v);
    CHECK_FALSE(p->entropic_v_per_ah);
    // Errors: out of range, wrong type, a slope without k, the key on another step kind.
    const std::string bad = replace(
        replace(kRecipe, "cooling_s = 300\n", "cooling_s = 300\nentropic_v = 3\nentropic_v_per_ah = \"x\"\n"),
        "sample_interval_s = 0.01\n", "sample_interval_s = 0.01\nentropic_v = -0.05\n");
    write_file(d.root / "recipes/bad.toml", bad);
    try {
        load_recipe(d.root / "recipes/bad.toml");
        FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
        const auto& ds = e.diagnostics();
        const Diagnostic range = one(ds, "steps[3].entropic_v");
        CHECK(contains(range.message, "out of range: 3"));
        CHECK(range.line == line_of(bad, "entropic_v = 3"));
        CHECK(one(ds, "steps[3].entropic_v_per_ah").line == line_of(bad, "entropic_v_per_ah = \"x\""));
        CHECK(one(ds, "steps[2].entropic_v").line == line_of(bad, "entropic_v = -0.05"));  // a pulse has none
    }
    const std::string slope_only = replace(kRecipe, "cooling_s = 300\n", "cooling_s = 300\nentropic_v_per_ah = 0.05\n");
    write_file(d.root / "recipes/slope.toml", slope_only);
    try {
        load_recipe(d.root / "recipes/slope.toml");
        FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
        const Diagnostic s = one(e.diagnostics(), "steps[3].entropic_v_per_ah");
        CHECK(contains(s.message, "needs entropic_v"));
        CHECK(s.line == line_of(slope_only, "entropic_v_per_ah = 0.05"));
    }
}
