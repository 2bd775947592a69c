// eolstation instruments thermo … — (not yet written; adds no subcommand until it is)
#include "commands.hpp"

namespace eol::cli {
void add_instruments_modbus_commands(CLI::App& /*instruments*/) {}
}  // namespace eol::cli
