// Shared plumbing of the libFuzzer targets (tests/fuzz/*_fuzz.cc).
//
// The parsers under test take file paths, as the programs call them, so each
// input is written to a scratch file in a per-process directory (on /dev/shm
// when there is one: no disk I/O per execution) that is removed at exit.
//
// The oracle: a parser either accepts the input or throws its documented
// error type, whose message must not be empty. Any other exception escapes
// expect_only() after naming its type on stderr, which libFuzzer reports as a
// crash (uncaught exception -> abort); sanitizer reports and hangs are
// findings on their own.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <typeinfo>

namespace dyt::fuzz {

// The per-process scratch directory (created on first use, removed at exit).
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    namespace fs = std::filesystem;
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    fs::path d = base / ("dyt-fuzz-" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    static const fs::path to_remove = d;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(to_remove, ec);
    });
    return d;
  }();
  return dir;
}

// Writes `bytes` to `path` (replacing it); aborts on failure, which would be
// a broken fuzzing setup rather than a finding in the parser.
inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz setup: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// A check of the target's own oracle failed: report and abort (a finding).
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "FUZZ FINDING: %s\n", what.c_str());
  std::abort();
}

// Runs `body`; the documented error type `Expected` is the accepted outcome
// of bad input (its message must say something). Any other exception is a
// finding: its type and message are printed and the process aborts.
template <typename Expected, typename Body>
void expect_only(const char* parser, Body&& body) {
  try {
    body();
  } catch (const Expected& e) {
    if (std::string_view(e.what()).empty()) finding(std::string(parser) + " threw an empty message");
  } catch (const std::exception& e) {
    finding(std::string(parser) + " threw " + typeid(e).name() + " (not the documented error): " + e.what());
  } catch (...) {
    finding(std::string(parser) + " threw a non-std exception");
  }
}

}  // namespace dyt::fuzz
