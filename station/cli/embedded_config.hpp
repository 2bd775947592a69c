// station/cli/embedded_config.hpp — the shipped config/ tree compiled into the
// binary (generated at build time by cmake/EmbedConfig.cmake), so that
// `eolstation demo` needs no files beside it.
#pragma once

#include <string_view>
#include <vector>

#include "eol/station/config.hpp"

namespace eol::cli {

struct EmbeddedFile {
    std::string_view path;  // relative to config/, e.g. "dialects/keysight-el30000.toml"
    std::string_view text;
};

const std::vector<EmbeddedFile>& embedded_config();

/// A shipped recipe ("recipes/NAME.toml"), parsed; diagnostics name
/// "config/recipes/NAME.toml". std::out_of_range if not shipped.
station::Recipe embedded_recipe(std::string_view path);

}  // namespace eol::cli
