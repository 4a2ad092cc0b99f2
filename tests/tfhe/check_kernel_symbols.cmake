# The rule of src/tfhe/kernels/kernel_set.hpp, checked on the compiled objects: every symbol
# that a vector extension's kernel set (kernels/<set>.cpp) defines for the linker lies in
# that set's own namespace. A symbol outside it (an inline function or template instance
# emitted there) is compiled for the extension, and the linker may keep it for callers on
# any CPU: the binary would then die on a CPU without the extension.
#   cmake -DNM=<nm> -DOBJECTS=<veil_tfhe's object files, separated by |> -P check_kernel_symbols.cmake
string(REPLACE "|" ";" objects "${OBJECTS}")
set(checked 0)
foreach(object IN LISTS objects)
  if(NOT object MATCHES "kernels/(avx2|avx512)\\.cpp\\.o(bj)?$")
    continue()
  endif()
  set(set ${CMAKE_MATCH_1})
  execute_process(COMMAND ${NM} --defined-only --extern-only --demangle ${object}
                  OUTPUT_VARIABLE listing RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${NM} failed on ${object}")
  endif()
  string(REPLACE "\n" ";" lines "${listing}")
  foreach(line IN LISTS lines)
    if(NOT line MATCHES "^[0-9a-fA-F]* *[A-Za-z] (.*)$")
      continue()
    endif()
    set(symbol "${CMAKE_MATCH_1}")
    if(NOT symbol MATCHES "^veil::tfhe::kernels::${set}::")
      message(SEND_ERROR "the ${set} kernel set defines '${symbol}' outside veil::tfhe::kernels::${set}")
      set(failed TRUE)
    endif()
  endforeach()
  math(EXPR checked "${checked} + 1")
endforeach()
if(NOT checked EQUAL 2)
  message(FATAL_ERROR "expected the avx2 and avx512 kernel objects among OBJECTS, found ${checked}")
endif()
if(NOT failed)
  message(STATUS "avx2 and avx512 kernel sets: every external symbol in the set's namespace")
endif()
