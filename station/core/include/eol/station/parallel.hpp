// eol/station/parallel.hpp — run the slices of one job on threads of their own.
#pragma once

#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace eol::station {

/// Runs work(t) for t in [0, n): t = 0 on the calling thread, the others on
/// threads of their own, and returns when all have ended; the first
/// exception thrown (by slice number) is then rethrown. n = 0 does nothing.
template <typename Work>
void in_parallel(std::size_t n, Work&& work) {
    if (n == 0) return;
    std::vector<std::exception_ptr> thrown(n);
    auto guarded = [&](std::size_t t) {
        try {
            work(t);
        } catch (...) {
            thrown[t] = std::current_exception();
        }
    };
    std::vector<std::thread> pool;
    for (std::size_t t = 1; t < n; ++t) pool.emplace_back(guarded, t);
    guarded(0);
    for (auto& th : pool) th.join();
    for (const auto& e : thrown)
        if (e) std::rethrow_exception(e);
}

}  // namespace eol::station
