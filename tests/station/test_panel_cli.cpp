// The operator panel end to end: `eolstation sim` serves a temporary
// station's instruments, `eolstation serve` runs it with a [panel] table,
// and headless Chromium (Debian's chromium, driven over the DevTools
// protocol by tests/station/panel_browser.py) is the operator: the abort
// buttons are disabled before a login, it logs in through the page, scans a
// serial into channel 1, and the banner goes TESTING → PASS while the page
// is open; a screenshot is taken; no console message, exception or failed
// load. Without chromium the test exits 77 (ctest: skipped).
#include <doctest/doctest.h>

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "support/auth_test.hpp"
#include "support/cli_test.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"
#include "support/station_test.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool have_chromium() { return std::system("command -v chromium >/dev/null 2>&1") == 0; }

/// A two-position station (a two-channel Keysight-style load, an ET-7018Z
/// thermocouple module) on free loopback ports, with a panel.
std::string station_text(std::uint16_t load, std::uint16_t tc, std::uint16_t panel, const std::string& language,
                         double time_scale) {
    const std::string c = EOL_CONFIG_DIR;
    return "[station]\nid = \"PANEL-TEST\"\nrecipe = \"" + c + "/recipes/eol-18650.toml\"\nserial_scheme = \"" + c +
           "/serial-scheme.toml\"\nstore = \"test.db\"\nambient = { thermo = \"tc1\", channel = 7 }\n\n"
           "[instruments.load1]\ndriver = \"scpi_load\"\naddress = \"tcp://127.0.0.1:" + std::to_string(load) +
           "\"\ndialect = \"" + c + "/dialects/keysight-el30000.toml\"\nchannels = 2\n\n"
           "[instruments.tc1]\ndriver = \"modbus_thermo\"\naddress = \"tcp://127.0.0.1:" + std::to_string(tc) +
           "\"\nmap = \"" + c + "/maps/icpdas-et7018z.toml\"\nchannels = 8\n\n"
           "[[channels]]\nposition = 1\nload = \"load1\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 0\n\n"
           "[[channels]]\nposition = 2\nload = \"load1\"\nload_channel = 2\nthermo = \"tc1\"\nthermo_channel = 1\n\n"
           "[limits]\ntemp_abort_c = 60.0\nv_min_v = 2.5\ni_max_a = 10.0\n\n"
           "[screening]\nfeatures = [\"ocv_v\"]\n\n"
           "[panel]\nbind = \"127.0.0.1\"\nport = " + std::to_string(panel) + "\nlanguage = \"" + language + "\"\n\n"
           "[sim]\ntime_scale = " + std::to_string(time_scale) +
           "\nseed = 7\nambient_c = 25.0\nlot = \"0042\"\nproduction_date = 2023-03-14\ncells = 20\n";
}

}  // namespace

TEST_CASE("panel cli: in headless Chromium an operator logs in, scans a serial and the channel's banner goes from TESTING to PASS") {
    if (!have_chromium()) {
        MESSAGE("chromium is not installed (tools/setup installs it): skipped");
        std::exit(77);  // ctest: skipped, never passed
    }
    eol::test::TempDir tmp;
    const std::uint16_t load = eol::test::free_port(), tc = eol::test::free_port(), panel = eol::test::free_port();
    const double scale = 100;  // the recipe's 22 min in about 13 s: long enough to watch it run
    const fs::path config = tmp.write("station.toml", station_text(load, tc, panel, "en", scale));
    eol::test::add_test_users(tmp.dir / "test.db");

    eol::test::Process::Options so;
    so.pipe_stdin = true;
    so.stop_signal = SIGKILL;
    eol::test::Process sim({EOL_CLI, "sim", "--config", config.string()}, so);
    for (int k = 0; k < 2; ++k) REQUIRE_MESSAGE(!sim.read_line(30).empty(), "sim did not start");

    eol::test::Process::Options vo;
    vo.pipe_stdin = true;
    vo.err = eol::test::Process::Stream::discard;
    eol::test::Process serve({EOL_CLI, "serve", "--config", config.string(), "--time-scale", std::to_string(scale)}, vo);
    // The panel answers once serve has connected its instruments.
    bool up = false;
    for (int k = 0; k < 300 && !up; ++k) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(panel);
        up = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(fd);
    }
    REQUIRE_MESSAGE(up, "the panel did not listen on port " << panel);

    const std::string serial = eol::test::lot0042_serial(55);
    const fs::path png = tmp / "panel.png";
    int code = -1;
    const std::string cmd = "timeout 300 /usr/bin/python3 " + std::string(EOL_SOURCE_DIR) +
                            "/tests/station/panel_browser.py --url http://127.0.0.1:" + std::to_string(panel) +
                            "/ --channel 1 --serial " + serial + " --user ana --password '" +
                            eol::test::kTestPassword + "' --screenshot " + png.string() + " --timeout 120";
    const std::string out = eol::test::run_command(cmd, code);
    REQUIRE_MESSAGE(code == 0, out);
    const json r = json::parse(out);
    INFO(r.dump(2));
    CHECK(r["ok"] == true);
    CHECK(r["language"] == "en");
    CHECK(r["buttons_disabled_before_login"] == true);  // the login gate, as the operator sees it
    CHECK(r["buttons_enabled_after_login"] == true);
    // The banner changed while the page was open: ready → testing → pass.
    const std::string history = r["history"];
    CHECK(history.find("testing") != std::string::npos);
    CHECK(history.substr(history.rfind(' ') + 1) == "pass");
    CHECK(r["banner"] == "PASS");
    CHECK(r["recent_links"].size() == 1);
    CHECK(r["recent_links"][0] == "/unit/" + serial);
    if (fs::exists("/usr/share/javascript/chart.js/chart.min.js")) {
        CHECK(r["plot_canvases"] == 2);
        CHECK(r["plot_points"].get<int>() > 10);  // the live plot of channel 1 was drawn
    }
    CHECK_MESSAGE(r["console"].empty(), r["console"].dump(2));
    REQUIRE(fs::exists(png));
    CHECK(fs::file_size(png) > 30'000);
    const std::string head = slurp(png).substr(0, 8);
    CHECK(head == std::string("\x89PNG\r\n\x1a\n", 8));

    // The unit page the last-cells link points at.
    const eol::test::HttpReply unit = eol::test::http(panel, "GET", "/unit/" + serial);
    CHECK(unit.status == 200);
    CHECK(unit.body.find(serial) != std::string::npos);
    // Keep the screenshot for a person to look at (the temporary directory goes).
    const fs::path keep = fs::path(EOL_BINARY_DIR) / "panel-screenshot.png";
    fs::copy_file(png, keep, fs::copy_options::overwrite_existing);
    MESSAGE("banner history '" << history << "', screenshot " << fs::file_size(png) << " bytes, copied to " << keep.string());
    CHECK(serve.terminate(SIGTERM, 30) == 0);
}
