#include "trainer/program.h"

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <new>

#include "checkpoint/atomic_file.h"
#include "checkpoint/safetensors.h"
#include "configs/config.h"
#include "trainer/data/token_shard.h"

namespace dyt::trainer {

int run_program(const char* name, const std::function<int()>& body) {
  try {
    return body();
  } catch (const config::ConfigError& e) {
    std::fprintf(stderr, "%s: config error: %s\n", name, e.what());
    return 2;
  } catch (const data::DataError& e) {
    std::fprintf(stderr, "%s: data error: %s\n", name, e.what());
  } catch (const checkpoint::CheckpointError& e) {
    std::fprintf(stderr, "%s: checkpoint error: %s\n", name, e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of memory (reduce train.micro_batch or train.seq_len)\n", name);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
  }
  return 1;
}

void write_text_file(const std::string& path, const std::string& text) {
  try {
    checkpoint::write_file_atomically(path, text);
  } catch (const checkpoint::AtomicFileError& e) {
    throw std::runtime_error("cannot write " + path + ": " + e.what());
  }
}

}  // namespace dyt::trainer
