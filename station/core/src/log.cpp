#include "eol/station/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

namespace eol::station {

namespace {

spdlog::level::level_enum level_from_env() {
    const char* v = std::getenv("EOL_LOG_LEVEL");
    if (!v || !*v) return spdlog::level::info;
    const auto l = spdlog::level::from_str(v);
    // from_str answers off for anything it does not know; "off" is the only spelling of off.
    if (l == spdlog::level::off && std::string(v) != "off") {
        std::fprintf(stderr, "EOL_LOG_LEVEL=%s: not a level (trace, debug, info, warn, error, critical, off); using info\n", v);
        return spdlog::level::info;
    }
    return l;
}

}  // namespace

spdlog::logger& station_log(const std::string& component) {
    static std::mutex mutex;
    static std::map<std::string, std::shared_ptr<spdlog::logger>> loggers;
    static const spdlog::level::level_enum level = level_from_env();
    static const auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    std::lock_guard lk(mutex);
    auto& l = loggers[component];
    if (!l) {
        l = std::make_shared<spdlog::logger>(component, sink);
        l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %n %v");
        l->set_level(level);
        l->flush_on(spdlog::level::warn);
    }
    return *l;
}

}  // namespace eol::station
