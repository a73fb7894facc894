# Finds NCCL for the NCCL communicator (parallel/nccl_communicator.h) when the
# CUDA targets are built, and sets DYT_HAVE_NCCL. Looked for, in order:
#   DYT_NCCL_ROOT (cache; its include/ and lib/), $NCCL_HOME, the CUDA
#   toolkit's own folders (where the toolkit of this project's machines
#   keeps it: <toolkit>/include/nccl.h, <toolkit>/lib/libnccl.so), the usual
#   system folders, and last the `nvidia-nccl-cu*` wheel PyTorch depends on
#   (site-packages/nvidia/nccl/{include,lib}, found by asking
#   DYT_NCCL_PYTHON, default python3, where the package lies).
# The wheel ships only libnccl.so.2 (no unversioned link), so that name is
# searched for too. NCCL must be 2.14 or later (ncclCommFinalize,
# ncclGetLastError); split uses ncclCommSplit from 2.18 on, a fresh id before.
option(DYT_WITH_NCCL "Build the NCCL communicator when CUDA and NCCL are found" ON)
set(DYT_NCCL_ROOT "" CACHE PATH "Where NCCL is installed (include/nccl.h, lib/libnccl.so)")
set(DYT_NCCL_PYTHON "python3" CACHE STRING "Python asked for the nvidia-nccl wheel's folder")
set(DYT_HAVE_NCCL OFF)
if(DYT_HAVE_CUDA AND DYT_WITH_NCCL)
  set(_dyt_nccl_hints ${DYT_NCCL_ROOT} $ENV{NCCL_HOME} ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR})
  foreach(_inc IN LISTS CUDAToolkit_INCLUDE_DIRS)
    get_filename_component(_up "${_inc}/.." ABSOLUTE)
    list(APPEND _dyt_nccl_hints ${_up})
  endforeach()
  execute_process(
    COMMAND ${DYT_NCCL_PYTHON} -c
      "import importlib.util as u; s = u.find_spec('nvidia.nccl'); print(list(s.submodule_search_locations)[0])"
    OUTPUT_VARIABLE _dyt_nccl_wheel OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
  find_path(DYT_NCCL_INCLUDE_DIR nccl.h HINTS ${_dyt_nccl_hints} PATH_SUFFIXES include)
  find_library(DYT_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_dyt_nccl_hints}
               PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
  # The wheel last: a toolkit's or the system's NCCL is preferred to it.
  if(_rc EQUAL 0 AND IS_DIRECTORY "${_dyt_nccl_wheel}")
    find_path(DYT_NCCL_INCLUDE_DIR nccl.h HINTS ${_dyt_nccl_wheel}/include NO_DEFAULT_PATH)
    find_library(DYT_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_dyt_nccl_wheel}/lib NO_DEFAULT_PATH)
  endif()
  if(DYT_NCCL_INCLUDE_DIR AND DYT_NCCL_LIBRARY)
    file(STRINGS "${DYT_NCCL_INCLUDE_DIR}/nccl.h" _v REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
    string(REGEX REPLACE ".*NCCL_MAJOR ([0-9]+).*" "\\1" _maj "${_v}")
    string(REGEX REPLACE ".*NCCL_MINOR ([0-9]+).*" "\\1" _min "${_v}")
    string(REGEX REPLACE ".*NCCL_PATCH ([0-9]+).*" "\\1" _pat "${_v}")
    set(DYT_NCCL_VERSION "${_maj}.${_min}.${_pat}")
    if(DYT_NCCL_VERSION VERSION_LESS 2.14)
      message(WARNING "dyt-train: NCCL ${DYT_NCCL_VERSION} at ${DYT_NCCL_INCLUDE_DIR} is older than 2.14; "
                      "the NCCL communicator is not built")
    else()
      add_library(dyt_nccl INTERFACE)
      target_include_directories(dyt_nccl INTERFACE ${DYT_NCCL_INCLUDE_DIR})
      target_link_libraries(dyt_nccl INTERFACE ${DYT_NCCL_LIBRARY})
      set(DYT_HAVE_NCCL ON)
    endif()
  endif()
endif()
if(DYT_HAVE_NCCL)
  message(STATUS "dyt-train: NCCL ${DYT_NCCL_VERSION}: ${DYT_NCCL_INCLUDE_DIR}, ${DYT_NCCL_LIBRARY}")
elseif(DYT_HAVE_CUDA AND DYT_WITH_NCCL)
  message(STATUS "dyt-train: NCCL not found (set DYT_NCCL_ROOT); the NCCL communicator is not built")
else()
  message(STATUS "dyt-train: NCCL communicator off (CUDA ${DYT_HAVE_CUDA}, DYT_WITH_NCCL ${DYT_WITH_NCCL})")
endif()
