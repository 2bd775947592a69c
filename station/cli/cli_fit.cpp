// eolstation fit … — (not yet written; adds no subcommand until it is)
#include "commands.hpp"

namespace eol::cli {
void add_fit_commands(CLI::App& /*app*/) {}
}  // namespace eol::cli
