// eolstation sim-production — simulated production into a results store (being written).
#include "commands.hpp"

namespace eol::cli {
void add_production_commands(CLI::App& /*app*/) {}
}  // namespace eol::cli
