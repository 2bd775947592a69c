#include <stdexcept>
#include <string>

#include "embedded_config.hpp"

namespace eol::cli {

station::Recipe embedded_recipe(std::string_view path) {
    for (const auto& f : embedded_config())
        if (f.path == path) return station::parse_recipe(f.text, "config/" + std::string(path));
    throw std::out_of_range("no shipped recipe " + std::string(path));
}

}  // namespace eol::cli
