# Script mode: writes OUT, a C++ source holding every shipped config file under
# ROOT (path relative to ROOT → text), so `eolstation demo` runs on its
# embedded default with no files beside the binary.
file(GLOB_RECURSE _files RELATIVE "${ROOT}" "${ROOT}/*.toml")
list(SORT _files)
set(_body "// Generated from config/ by cmake/EmbedConfig.cmake. Do not edit.\n#include \"embedded_config.hpp\"\n\nnamespace eol::cli {\nconst std::vector<EmbeddedFile>& embedded_config() {\n    static const std::vector<EmbeddedFile> files{\n")
foreach(f ${_files})
  file(READ "${ROOT}/${f}" _text)
  string(FIND "${_text}" ")eolcfg\"" _bad)
  if(NOT _bad EQUAL -1)
    message(FATAL_ERROR "${f} contains the raw-string delimiter )eolcfg\"")
  endif()
  string(APPEND _body "        {\"${f}\", R\"eolcfg(${_text})eolcfg\"},\n")
endforeach()
string(APPEND _body "    };\n    return files;\n}\n}  // namespace eol::cli\n")
file(WRITE "${OUT}.tmp" "${_body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
