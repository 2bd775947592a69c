// The one TOML reader (eol/instruments/toml_file.hpp): size and nesting are
// bounded before toml++ sees the text, so hostile files end in a
// "file:line:col: message" error instead of a stack overflow — through the
// library and through the real `eolstation` binary.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "eol/instruments/dialect.hpp"
#include "eol/instruments/register_map.hpp"
#include "eol/instruments/toml_file.hpp"
#include "support/cli_test.hpp"
#include "support/process.hpp"

using namespace eol;
namespace fs = std::filesystem;
using instruments::TomlError;

namespace {

std::string repeat(std::string_view s, std::size_t n) {
    std::string out;
    out.reserve(s.size() * n);
    for (std::size_t k = 0; k < n; ++k) out += s;
    return out;
}

// `[a.a.a…]` with `segments` segments (the reproducer for 100,000).
std::string dotted_header(std::size_t segments) {
    std::string h = "[a";
    h += repeat(".a", segments - 1);
    return h + "]\nx = 1\n";
}

std::string error_of(std::string_view text, std::string_view source = "t.toml") {
    try {
        (void)instruments::parse_toml_text(text, source);
    } catch (const TomlError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("hostile: toml: 100,000 dotted segments in a table header are refused with file:line:col") {
    const std::string text = "# header\n" + dotted_header(100000);
    const std::string e = error_of(text, "deep.toml");
    CHECK(e == "deep.toml:2:65: nesting deeper than 32 levels (dotted keys, table headers, arrays and "
               "inline tables together)");
    // The same through the readers of dialects and register maps.
    CHECK_THROWS_WITH_AS((void)instruments::parse_dialect(text, "d.toml"),
                         doctest::Contains("d.toml:2:65: nesting deeper than 32 levels"), TomlError);
    CHECK_THROWS_WITH_AS((void)instruments::parse_register_map(text, "m.toml"),
                         doctest::Contains("m.toml:2:65: nesting deeper than 32 levels"),
                         instruments::DefinitionError);
    // Arrays of tables too, and dotted keys.
    CHECK(error_of("[[a" + repeat(".a", 50) + "]]\n").starts_with("t.toml:1:"));
    CHECK(error_of("[t]\nk" + repeat(".k", 100000) + " = 1\n").starts_with("t.toml:2:"));
}

TEST_CASE("hostile: toml: deeply nested inline tables and arrays are refused, strings and comments are not counted") {
    CHECK(error_of("x = " + repeat("{a=", 100000) + "1" + repeat("}", 100000) + "\n")
              .starts_with("t.toml:1:"));
    CHECK(error_of("x = " + repeat("[", 100000) + repeat("]", 100000) + "\n") ==
          "t.toml:1:36: nesting deeper than 32 levels (dotted keys, table headers, arrays and inline "
          "tables together)");
    CHECK(error_of("x = [\n" + repeat("[\n", 40) + repeat("]\n", 40) + "]\n").starts_with("t.toml:32:"));
    CHECK(error_of("x = {" + repeat("a.", 40) + "b = 1}\n").starts_with("t.toml:1:"));
    // Depth 32 is fine, 33 is not (header 2 + key 1 + 29 brackets = 32).
    CHECK(error_of("[a.b]\nx = " + repeat("[", 29) + repeat("]", 29) + "\n").empty());
    CHECK_FALSE(error_of("[a.b]\nx = " + repeat("[", 30) + repeat("]", 30) + "\n").empty());
    // Brackets and dots inside strings, quoted keys and comments are text.
    const std::string deep_text = repeat("[{.", 5000);
    CHECK(error_of("x = \"" + deep_text + "\"\ny = '" + deep_text + "'\n# " + deep_text +
                   "\nz = \"\"\"\n" + deep_text + "\n\"\"\"\n\"" + repeat("a.", 100) + "\" = 1\n")
              .empty());
    const toml::table t = instruments::parse_toml_text("[\"a.b\".c]\nk = { p.q = [1, [2, {r = 3}]] }\n", "ok.toml");
    CHECK(t["a.b"]["c"]["k"]["p"]["q"][1][1]["r"].value<int>() == 3);
}

TEST_CASE("hostile: toml: oversize, empty, random bytes and non-regular files end in a clear error") {
    test::TempDir tmp;
    // More than 1 MiB: refused before it is read whole.
    const fs::path big = tmp.write("big.toml", "x = 1\n" + std::string(instruments::kTomlMaxBytes, '#'));
    const std::string big_error =
        big.string() + ": 1048582 bytes is more than the limit of 1048576 bytes for a TOML file";
    CHECK_THROWS_WITH_AS((void)instruments::parse_toml_file(big), big_error.c_str(), TomlError);
    CHECK(error_of(std::string(instruments::kTomlMaxBytes + 1, ' '))
              .starts_with("t.toml: 1048577 bytes is more than the limit"));
    // Empty, blank and comment-only files say so, at line 1.
    const fs::path empty = tmp.write("empty.toml", "");
    const std::string empty_error = empty.string() + ":1:1: empty file: no TOML table or key";
    CHECK_THROWS_WITH_AS((void)instruments::parse_toml_file(empty), empty_error.c_str(), TomlError);
    CHECK(error_of("\n  \n# only a comment\n") == "t.toml:1:1: no TOML table or key (only blanks and comments)");
    CHECK_THROWS_WITH_AS((void)instruments::load_dialect(empty), empty_error.c_str(), instruments::DefinitionError);
    CHECK_THROWS_WITH_AS((void)instruments::load_register_map(empty.string()), empty_error.c_str(),
                         instruments::DefinitionError);
    // Syntax errors: file:line:col from toml++.
    CHECK(error_of("a = 1\nb = = 2\n").starts_with("t.toml:2:5: TOML syntax: "));
    // Random bytes: an error or a table, never a crash (ASan/UBSan watch).
    std::mt19937 rng(20240611);
    std::uniform_int_distribution<int> byte(0, 255), len(1, 4096);
    const std::string alphabet = "[]{}.=\"'#\n ,a1";
    for (int k = 0; k < 300; ++k) {
        std::string text(static_cast<std::size_t>(len(rng)), '\0');
        for (auto& c : text)  // half random bytes, half TOML punctuation
            c = k % 2 ? static_cast<char>(byte(rng))
                      : alphabet[static_cast<std::size_t>(byte(rng)) % alphabet.size()];
        try {
            (void)instruments::parse_toml_text(text, "random.toml");
        } catch (const TomlError& e) {
            CHECK(std::string(e.what()).starts_with("random.toml"));
        }
        CHECK_THROWS_AS((void)instruments::parse_dialect(text, "random.toml"), instruments::DefinitionError);
    }
    // A directory, a FIFO (no hang: opened without blocking), a missing file.
    const std::string dir_error = tmp.dir.string() + ": is a directory, not a TOML file";
    CHECK_THROWS_WITH_AS((void)instruments::parse_toml_file(tmp.dir), dir_error.c_str(), TomlError);
    const fs::path fifo = tmp / "fifo.toml";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const auto t0 = std::chrono::steady_clock::now();
    const std::string fifo_error = fifo.string() + ": not a regular file (a FIFO, socket or device?)";
    CHECK_THROWS_WITH_AS((void)instruments::parse_toml_file(fifo), fifo_error.c_str(), TomlError);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
    const std::string none_error = (tmp / "none.toml").string() + ": cannot open: No such file or directory";
    CHECK_THROWS_WITH_AS((void)instruments::parse_toml_file(tmp / "none.toml"), none_error.c_str(), TomlError);
}

TEST_CASE("toml: every shipped TOML file is within the limits") {
    std::size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(EOL_CONFIG_DIR)) {
        if (e.path().extension() != ".toml") continue;
        CAPTURE(e.path());
        CHECK_NOTHROW((void)instruments::parse_toml_file(e.path()));
        ++n;
    }
    CHECK(n >= 9);
}

TEST_CASE("hostile: toml: the real binary answers a deeply nested dialect or map with exit 2 and file:line") {
    test::TempDir tmp;
    const fs::path deep = tmp.write("deep.toml", dotted_header(100000));
    const auto load = test::run_process({EOL_CLI, "instruments", "load", "--dialect", deep.string(), "--address",
                                         "tcp://127.0.0.1:1", "identify"},
                                        60);
    CHECK_FALSE(load.signaled);
    CHECK(load.exit == 2);
    CHECK(load.err.find(deep.string() + ":1:65: nesting deeper than 32 levels") != std::string::npos);
    const fs::path inline_deep =
        tmp.write("inline.toml", "x = " + repeat("{a=", 100000) + "1" + repeat("}", 100000) + "\n");
    const auto thermo = test::run_process(
        {EOL_CLI, "instruments", "thermo", "--map", inline_deep.string(), "--address", "tcp://127.0.0.1:1"}, 60);
    CHECK_FALSE(thermo.signaled);
    CHECK(thermo.exit == 2);
    CHECK(thermo.err.find(inline_deep.string() + ":1:") != std::string::npos);
    CHECK(thermo.err.find("nesting deeper than 32 levels") != std::string::npos);
}
