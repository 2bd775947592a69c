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

# GCC 12 at -O2/-O3 reports std::string concatenation ("x" + std::string) as
# overlapping memcpy (-Wrestrict, GCC PR 105329, a false positive fixed in 13).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(eol_warnings INTERFACE -Wno-restrict)
endif()

# GCC notes that passing 32-byte vectors (the ECM fit's AVX helpers) changed
# ABI in GCC 4.6: nothing of ours crosses a library boundary that way.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(eol_warnings INTERFACE -Wno-psabi)
endif()

if(EOL_SANITIZE)
  target_compile_options(eol_warnings INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(eol_warnings INTERFACE -fsanitize=address,undefined)
endif()
