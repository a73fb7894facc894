// The common frame of every dyt-* program: one clear error line and an exit
// code that tells a script what went wrong, never a crash or a stack dump.
#pragma once

#include <functional>
#include <string>

namespace dyt::trainer {

// Exit codes: 0 success; 1 bad data, checkpoint or runtime failure; 2 bad
// config or command line (nothing was run).
int run_program(const char* name, const std::function<int()>& body);

// Writes a small text file (run metadata, JSON side files) all or nothing
// (checkpoint/atomic_file.h: a crash leaves the old file or the new one);
// throws std::runtime_error naming the path when it cannot.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace dyt::trainer
