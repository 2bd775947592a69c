// What one station record costs to store (Store::write: one transaction,
// synchronous = FULL, its fsyncs included), on a new store and on one that
// has been written to for a while, side by side. The controller's benchmark
// writes each size's few records to a new store; a line writes all shift to
// one. Records of the example recipe's shape (station_record.hpp).
//
//   bench_store_write [--records N] [--seed S] [--dir D]
//
// Prints the wall time of the first 16 writes to a new store and of the last
// 100 of N (default 400: past the write-ahead log's first checkpoint, so it is
// being reused), their median and mean, and the log's size at the end.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "eol/station/store.hpp"
#include "station_record.hpp"

namespace fs = std::filesystem;
using namespace eol;

namespace {

struct Stats {
    double median_ms = 0, mean_ms = 0, max_ms = 0;
};
Stats stats(std::vector<double> v) {
    Stats s;
    if (v.empty()) return s;
    s.mean_ms = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
    s.max_ms = *std::max_element(v.begin(), v.end());
    std::sort(v.begin(), v.end());
    s.median_ms = v[v.size() / 2];
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    int records = 400;
    std::uint64_t seed = 7;
    fs::path dir = fs::temp_directory_path();
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--records" && i + 1 < argc) records = std::atoi(argv[++i]);
        else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
        else {
            fmt::print(stderr, "usage: bench_store_write [--records N (>= 116)] [--seed S] [--dir D]\n");
            return 2;
        }
    }
    if (records < 116) {
        fmt::print(stderr, "bench_store_write: --records must be at least 116 (16 first + 100 last)\n");
        return 2;
    }
    const fs::path db = dir / fmt::format("bench_store_write.{}.db", getpid());
    std::vector<double> ms;
    std::error_code ec;
    std::uintmax_t wal_bytes = 0;
    {
        auto store = station::Store::open(db, station::OpenOptions{.create = true});
        for (int k = 0; k < records; ++k) {
            const auto rec = bench::station_shaped_record(fmt::format("BW{:08d}", k), seed + static_cast<std::uint64_t>(k),
                                                          1.7e9 + 200.0 * k);
            const auto t0 = std::chrono::steady_clock::now();
            store.write(rec);
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        // While the store is open: closing it checkpoints and removes the log.
        wal_bytes = fs::file_size(fs::path(db.string() + "-wal"), ec);
    }
    const Stats first = stats({ms.begin(), ms.begin() + 16});
    const Stats last = stats({ms.end() - 100, ms.end()});
    fmt::print("bench_store_write: {} records of the example recipe's shape (2,620 trace samples, 13 measurements, 2 fits), "
               "one transaction each, synchronous = FULL, in {}\n\n",
               records, dir.string());
    fmt::print("{:>28} {:>10} {:>10} {:>10}\n", "writes", "median ms", "mean ms", "max ms");
    fmt::print("{:>28} {:>10.3f} {:>10.3f} {:>10.3f}\n", "first 16 (a new store)", first.median_ms, first.mean_ms,
               first.max_ms);
    fmt::print("{:>28} {:>10.3f} {:>10.3f} {:>10.3f}\n", fmt::format("last 100 of {}", records), last.median_ms,
               last.mean_ms, last.max_ms);
    fmt::print("\nwrite-ahead log at the end: {} bytes\n", ec ? 0 : wal_bytes);
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix, ec);
    return 0;
}
