# One interface target carries the project's warning flags (and the sanitizers,
# when EOL_SANITIZE is on); every target of ours links it privately.
# -Wnull-dereference is left out: with GCC 12 at -O2/-O3 it fires on toml++'s
# checked as_table() casts (false positives), and at -O0 it checks nothing.
add_library(eol_warnings INTERFACE)
add_library(eol::warnings ALIAS eol_warnings)
target_compile_options(eol_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
  -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual
  $<$<BOOL:${EOL_WARNINGS_AS_ERRORS}>:-Werror>)

if(EOL_SANITIZE)
  target_compile_options(eol_warnings INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(eol_warnings INTERFACE -fsanitize=address,undefined)
endif()
