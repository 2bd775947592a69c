// eolstation quarantine | lookup | recall — (not yet written; adds no subcommand until it is)
#include "commands.hpp"

namespace eol::cli {
void add_quarantine_commands(CLI::App& /*app*/) {}
}  // namespace eol::cli
