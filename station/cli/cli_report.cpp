#include "commands.hpp"
namespace eol::cli {
void add_report_commands(CLI::App&) {}
}
