// tools/bench/rate_table.hpp — for Google Benchmark programs that compare
// request rates with a reference in one run: a reporter that prints the
// usual console output and keeps each benchmark's items per second, and the
// side-by-side table printed after the run.
//
// Lifecycle: pass a RateCollector to benchmark::RunSpecifiedBenchmarks, then
// read rate("BM_name") (by name prefix, so "/real_time" suffixes match) and
// print rows with print_rate_header / print_rate_row. A benchmark that did
// not run (filtered out) has rate 0, shown as ratio 0.00.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace eol::bench {

class RateCollector : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const auto& r : runs) {
            const auto it = r.counters.find("items_per_second");
            if (it != r.counters.end()) rates_[r.benchmark_name()] = it->second;
        }
        ConsoleReporter::ReportRuns(runs);
    }
    /// Items per second of the first benchmark whose name starts with `prefix`.
    double rate(std::string_view prefix) const {
        for (const auto& [name, v] : rates_)
            if (name.rfind(prefix, 0) == 0) return v;
        return 0.0;
    }

private:
    std::map<std::string, double> rates_;
};

inline void print_rate_header(const char* title, const char* reference) {
    std::printf("\n%s\n%-54s %12s %12s %8s\n", title, "", "ours", reference, "ratio");
}

inline void print_rate_row(const char* what, double ours, double reference) {
    std::printf("%-54s %12.0f %12.0f %7.2f\n", what, ours, reference, reference > 0 ? ours / reference : 0.0);
}

}  // namespace eol::bench
