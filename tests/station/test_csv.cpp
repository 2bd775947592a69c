// CSV table reader: header selection by name, quoting, numbers, and errors
// that name file:line and column.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "eol/station/csv.hpp"

using eol::station::CsvError;
using eol::station::CsvTable;

namespace {
std::string error_of(auto&& f) {
    try {
        f();
    } catch (const CsvError& e) {
        return e.what();
    }
    return "no error";
}
}  // namespace

TEST_CASE("csv: columns by name, numbers and strings") {
    const auto t = CsvTable::parse("time_s, current_a,voltage_v,serial\r\n"
                                   "0,0,4.1,A1\r\n"
                                   "\r\n"
                                   "0.5, +6.0 ,3.9,\"B, 2\"\r\n"
                                   "1e-3,-1.5E1,3.95,\"say \"\"hi\"\"\"\n",
                                   "mem.csv");
    CHECK(t.columns().size() == 4);
    CHECK(t.columns()[1] == "current_a");
    CHECK(t.rows() == 3);
    CHECK(t.has("voltage_v"));
    CHECK_FALSE(t.has("voltage"));
    const auto i = t.numbers("current_a");
    REQUIRE(i.size() == 3);
    CHECK(i[1] == 6.0);
    CHECK(i[2] == -15.0);
    CHECK(t.numbers("time_s")[2] == 1e-3);
    CHECK(t.strings("serial")[1] == "B, 2");
    CHECK(t.strings("serial")[2] == "say \"hi\"");
    CHECK(t.line_of(1) == 4);  // blank line 3 skipped, lines are physical
    CHECK(t.where(2) == "mem.csv:5");
}

TEST_CASE("csv: byte-order mark, other delimiter, quoted field over two lines") {
    const auto t = CsvTable::parse("\xEF\xBB\xBFname;note\nx;\"two\nlines\"\ny;z\n", "m.csv", ';');
    CHECK(t.columns()[0] == "name");
    CHECK(t.strings("note")[0] == "two\nlines");
    CHECK(t.line_of(1) == 4);
}

TEST_CASE("csv: errors name file, line and column") {
    const auto t = CsvTable::parse("t,v\n0,1\n1,abc\n2,\n3,nan\n", "d.csv");
    CHECK(error_of([&] { (void)t.numbers("v"); }) == "d.csv:3: column 'v': 'abc' is not a number");
    const auto t2 = CsvTable::parse("t,v\n0,1\n2,\n", "d.csv");
    CHECK(error_of([&] { (void)t2.numbers("v"); }) == "d.csv:3: column 'v': empty cell, a number is needed");
    const auto t3 = CsvTable::parse("t,v\n0,nan\n", "d.csv");
    CHECK(error_of([&] { (void)t3.numbers("v"); }) == "d.csv:2: column 'v': 'nan' is not finite");
    CHECK(std::isnan(t3.numbers("v", true)[0]));
    const auto t4 = CsvTable::parse("t,v\n0,1e999\n1,+-2\n", "d.csv");
    CHECK(error_of([&] { (void)t4.numbers("v"); }) == "d.csv:2: column 'v': '1e999' is out of range");

    CHECK(error_of([&] { (void)t.numbers("volts"); }) == "d.csv: no column 'volts' (columns: t, v)");
    const auto t5 = CsvTable::parse("time,voltage\n0,1\n", "e.csv");
    CHECK(error_of([&] { (void)t5.index("voltge"); }) ==
          "e.csv: no column 'voltge' (columns: time, voltage); did you mean 'voltage'?");

    CHECK(error_of([] { (void)CsvTable::parse("a,b\n1,2,3\n", "f.csv"); }) == "f.csv:2: 3 fields, the header has 2");
    CHECK(error_of([] { (void)CsvTable::parse("a,b\n1,\"2\n", "f.csv"); }) == "f.csv:2: unterminated quoted field");
    CHECK(error_of([] { (void)CsvTable::parse("a,a\n", "f.csv"); }) == "f.csv:1: column 'a' appears twice in the header");
    CHECK(error_of([] { (void)CsvTable::parse("\n\n", "f.csv"); }) == "f.csv: empty file (no header row)");
    CHECK(error_of([] { (void)CsvTable::read_file("/nonexistent/x.csv"); }) == "/nonexistent/x.csv: cannot open the file");
}

TEST_CASE("csv: reads a file") {
    const std::string path = std::string(EOL_BINARY_DIR) + "/test_csv_read.csv";
    {
        std::ofstream out(path);
        out << "a,b\n1,2\n3,4\n";
    }
    const auto t = CsvTable::read_file(path);
    CHECK(t.numbers("b")[1] == 4.0);
    CHECK(t.where(0) == path + ":2");
    std::remove(path.c_str());
}
