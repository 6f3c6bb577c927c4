# All dependencies come from Debian packages installed by scripts/install-deps.sh.
# Why each one is here: README.md, "Dependencies".
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED)
find_package(absl REQUIRED)                  # Status/StatusOr, string utilities
find_package(nlohmann_json 3.10 REQUIRED)    # JSON: configs, headers, datasets, HTTP bodies
# oneDNN: bf16/fp32 GEMM on CPU. Debian's dnnl-config.cmake insists on the
# OpenCL development files (its GPU runtime) that a CPU build never uses, so
# the library is found directly.
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp REQUIRED)
find_library(DNNL_LIBRARY NAMES dnnl REQUIRED)
add_library(DNNL::dnnl UNKNOWN IMPORTED)
set_target_properties(DNNL::dnnl PROPERTIES IMPORTED_LOCATION "${DNNL_LIBRARY}"
                      INTERFACE_INCLUDE_DIRECTORIES "${DNNL_INCLUDE_DIR}")
find_package(CLI11 REQUIRED)                 # command line
# TOML config files (serve --config); header-only, so the fuzz build
# instruments the parser too.
find_package(toml11 3.7 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)   # tokenizer pre-split regex (UCP)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib) # HTTP server and client
# TLS for the service and the remote guard (Debian's cpp-httplib is built with
# it), API-key digests and constant-time comparison, random ids.
find_package(OpenSSL 3 REQUIRED)
if(SAFEROUTE_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
