// models/src/common.hpp — internal helpers of the models library (not
// installed, not public): message text from pieces, and a parallel loop.
//
// cat(a, b, …): the pieces streamed with 6 significant digits (the models
// library links no formatting library).
// parallel_for(n, threads, f): f(item, thread_index) for item in [0, n) on up
// to `threads` threads (the calling thread is index 0); items are handed out
// one at a time. The first exception thrown by any call stops the handing out
// and is rethrown to the caller once every thread has finished.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace eol::models::detail {

template <class... A>
std::string cat(const A&... a) {
    std::ostringstream os;
    os.precision(6);
    (os << ... << a);
    return os.str();
}

/// 0 means one thread per hardware thread; never less than 1.
inline unsigned resolve_threads(unsigned t) {
    if (t == 0) t = std::thread::hardware_concurrency();
    return std::max(1u, t);
}

template <class F>
void parallel_for(std::size_t n, unsigned threads, F&& f) {
    const unsigned t_count = static_cast<unsigned>(std::min<std::size_t>(threads, n));
    if (t_count <= 1) {
        for (std::size_t i = 0; i < n; ++i) f(i, 0u);
        return;
    }
    std::atomic<std::size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&](unsigned t) {
        for (;;) {
            const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
            if (i >= n) break;
            try {
                f(i, t);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
                next.store(n);
            }
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(t_count - 1);
    for (unsigned t = 1; t < t_count; ++t) pool.emplace_back(worker, t);
    worker(0);
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace eol::models::detail
