// eolstation screen … — (not yet written; adds no subcommand until it is)
#include "commands.hpp"

namespace eol::cli {
void add_screen_commands(CLI::App& /*app*/) {}
}  // namespace eol::cli
