# saferoute_module(NAME <lib> DEPS <targets...> [TEST_DEPS <targets...>]
#                  [FUZZ_DEPS <targets...>] [TEST_LABELS <labels...>])
#
# One folder = one static library. Every *.cc in the folder is part of the
# library except *_test.cc (one GoogleTest binary each, registered with CTest)
# and *_fuzz.cc (libFuzzer targets, built only with SAFEROUTE_FUZZ; see
# DEVELOPERS.md, "Fuzzing").
# Globbing keeps folders independent: adding a file never touches a shared list.
function(saferoute_module)
  cmake_parse_arguments(M "" "NAME" "DEPS;TEST_DEPS;FUZZ_DEPS;TEST_LABELS" ${ARGN})
  file(GLOB _all CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  set(_srcs "")
  set(_tests "")
  set(_fuzz "")
  foreach(f ${_all})
    if(f MATCHES "_test\\.cc$")
      list(APPEND _tests ${f})
    elseif(f MATCHES "_fuzz\\.cc$")
      list(APPEND _fuzz ${f})
    else()
      list(APPEND _srcs ${f})
    endif()
  endforeach()
  if(_srcs)
    add_library(${M_NAME} STATIC ${_srcs})
    target_include_directories(${M_NAME} PUBLIC ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(${M_NAME} PUBLIC ${M_DEPS})
  else()
    add_library(${M_NAME} INTERFACE)
    target_include_directories(${M_NAME} INTERFACE ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(${M_NAME} INTERFACE ${M_DEPS})
  endif()
  if(SAFEROUTE_BUILD_TESTS)
    if(NOT M_TEST_LABELS)
      set(M_TEST_LABELS unit)
    endif()
    # `<lib>_tests` builds every test binary of the folder (used by the
    # sanitizer builds, which only build what they run).
    add_custom_target(${M_NAME}_tests)
    foreach(t ${_tests})
      get_filename_component(_name ${t} NAME_WE)
      add_executable(${_name} ${t})
      add_dependencies(${M_NAME}_tests ${_name})
      target_link_libraries(${_name} PRIVATE ${M_NAME} ${M_TEST_DEPS} GTest::gtest GTest::gtest_main)
      # Tests read ../shared relative to the repository root.
      target_compile_definitions(${_name} PRIVATE
        SAFEROUTE_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
        SAFEROUTE_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared")
      gtest_discover_tests(${_name} PROPERTIES LABELS "${M_TEST_LABELS}"
                           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} DISCOVERY_TIMEOUT 60)
    endforeach()
  endif()
  if(SAFEROUTE_FUZZ)
    # The libraries are instrumented by the top-level SAFEROUTE_FUZZ flags;
    # -fsanitize=fuzzer here only links libFuzzer's main.
    foreach(t ${_fuzz})
      get_filename_component(_name ${t} NAME_WE)
      add_executable(${_name} ${t})
      target_link_options(${_name} PRIVATE -fsanitize=fuzzer)
      target_link_libraries(${_name} PRIVATE ${M_NAME} ${M_FUZZ_DEPS})
      add_dependencies(fuzz_targets ${_name})
      # Smoke run (ctest -L fuzz): new inputs go to a corpus in the build
      # tree; the committed seeds (testdata/fuzz/<target>/, small) and the
      # dictionary (testdata/fuzz/<target>.dict) are only read.
      set(_seeds ${CMAKE_CURRENT_SOURCE_DIR}/testdata/fuzz/${_name})
      set(_dict ${CMAKE_CURRENT_SOURCE_DIR}/testdata/fuzz/${_name}.dict)
      set(_work ${CMAKE_CURRENT_BINARY_DIR}/${_name}.corpus)
      file(MAKE_DIRECTORY ${_work})
      set(_args -max_total_time=${SAFEROUTE_FUZZ_SMOKE_SECONDS} -timeout=10 -print_final_stats=1
                -artifact_prefix=${CMAKE_CURRENT_BINARY_DIR}/${_name}-)
      if(EXISTS ${_dict})
        list(APPEND _args -dict=${_dict})
      endif()
      list(APPEND _args ${_work})
      if(IS_DIRECTORY ${_seeds})
        list(APPEND _args ${_seeds})
      endif()
      add_test(NAME ${_name} COMMAND ${_name} ${_args})
      set_tests_properties(${_name} PROPERTIES LABELS fuzz
                           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    endforeach()
  endif()
endfunction()
