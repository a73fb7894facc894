// Runs f() and returns what it threw as text ("" when it returned): one
// rank's part of a collective step (a checkpoint save, a restore), whose
// error the ranks then agree on instead of throwing alone and leaving the
// others waiting. Header-only, no dependencies, so any layer may include it.
#pragma once

#include <exception>
#include <string>

namespace dyt {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace dyt
