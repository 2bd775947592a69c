# All dependencies are Debian packages installed by tools/setup; nothing is
# downloaded at build time.
find_package(Threads REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(SQLite3 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3.11 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBMODBUS REQUIRED IMPORTED_TARGET libmodbus>=3.1)
# Argon2id password hashes and random session tokens (station/auth).
pkg_check_modules(LIBSODIUM REQUIRED IMPORTED_TARGET libsodium>=1.0.18)
if(EOL_BUILD_TESTS)
  find_package(doctest REQUIRED)
endif()
if(EOL_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

# Third-party headers are system headers: their warnings are not ours.
foreach(tgt Eigen3::Eigen)
  get_target_property(_inc ${tgt} INTERFACE_INCLUDE_DIRECTORIES)
  set_target_properties(${tgt} PROPERTIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_inc}")
endforeach()
