// Writing a file all or nothing: readers (and a run that crashed half way)
// see either the previous file or the complete new one, never a torn one.
// Every file the project writes that someone would hate to lose goes through
// here: safetensors, token shards, the tokenizer model, checkpoints, and the
// trainer's config files.
//
// Its own small library (dyt_atomic_file, POSIX only): the data tools link it
// without the rest of the checkpoint layer, whose manifest will bring protobuf
// that dyt-tokenize must not link (trainer/tokenize_main.cc says why).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace dyt::checkpoint {

// An I/O failure while writing; what() names the file and the failed step
// ("write to 'x.tmp.Ab3xQ9' failed: No space left on device"). Callers wrap
// it in their own error type, prefixed with what they were writing.
class AtomicFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes go to a temporary of its own beside `path`, `path + ".tmp."` and six
// random characters (created with O_EXCL, so two writers of one path never
// share one); commit() fsyncs it, renames it over `path` and fsyncs the
// directory so the rename survives a power cut. If commit() is never reached
// (an exception, an early return), the destructor removes the temporary and
// `path` is untouched. Of two writers of one path, the last to commit wins,
// each file whole.
//
// The writer holds an flock on its temporary until the rename. Opening a
// writer removes the temporaries of the same path whose lock nobody holds:
// those of writers that died (a crash, SIGKILL); a live writer's is left
// alone, in this process or another.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // throws AtomicFileError
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);  // throws AtomicFileError
  void commit();                               // throws AtomicFileError

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Whether `name` (a file name, no directory) is one of the temporaries an
// AtomicFile of `target_name` would use.
bool is_atomic_temp_name(const std::string& name, const std::string& target_name);

// Writes `text` to `path` all or nothing (AtomicFile in one call).
void write_file_atomically(const std::string& path, const std::string& text);  // throws AtomicFileError

}  // namespace dyt::checkpoint
