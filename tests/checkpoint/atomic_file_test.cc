#include "checkpoint/atomic_file.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/file_size_limit.h"
#include "tests/common/scratch_dir_test.h"

namespace dyt::checkpoint {
namespace {

namespace fs = std::filesystem;
using testing_support::read_bytes;
using testing_support::write_bytes;
using Names = std::vector<std::string>;

class AtomicFileTest : public testing_support::ScratchDirTest {
 protected:
  AtomicFileTest() : ScratchDirTest("atomic_file") {}
};

TEST_F(AtomicFileTest, CommitReplacesTheFileWhole) {
  const std::string path = file("f.bin");
  write_file_atomically(path, "old");
  {
    AtomicFile out(path);
    out.write("new ", 4);
    EXPECT_EQ(read_bytes(path), "old");  // nothing visible before commit
    EXPECT_TRUE(fs::exists(out.temp_path()));
    EXPECT_TRUE(is_atomic_temp_name(fs::path(out.temp_path()).filename(), "f.bin")) << out.temp_path();
    out.write("contents", 8);
    out.commit();
  }
  EXPECT_EQ(read_bytes(path), "new contents");
  EXPECT_EQ(temporaries(), Names{});
}

// A writer that throws half way (the caller's own error, not an I/O one)
// leaves the old file and no temporary behind.
TEST_F(AtomicFileTest, AbandonedWriteKeepsTheOldFile) {
  const std::string path = file("f.bin");
  write_file_atomically(path, "old");
  try {
    AtomicFile out(path);
    out.write("half", 4);
    throw std::runtime_error("caller gave up");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(read_bytes(path), "old");
  EXPECT_EQ(temporaries(), Names{});
}

// With one fixed `path.tmp`, the second writer truncated the first one's
// temporary and the first commit published the second's half-written bytes.
TEST_F(AtomicFileTest, TwoWritersOfOnePathEachCommitTheirOwnBytes) {
  const std::string path = file("f.bin");
  AtomicFile a(path);
  a.write("AAAA", 4);
  AtomicFile b(path);
  EXPECT_NE(a.temp_path(), b.temp_path());
  b.write("BBBBBBBB", 8);
  a.commit();
  EXPECT_EQ(read_bytes(path), "AAAA");
  b.commit();
  EXPECT_EQ(read_bytes(path), "BBBBBBBB");
  EXPECT_EQ(temporaries(), Names{});
}

TEST_F(AtomicFileTest, ConcurrentWritersInThreadsNeverTearTheFile) {
  const std::string path = file("f.bin");
  constexpr int kThreads = 4, kWrites = 25;
  constexpr size_t kBytes = 256 << 10;  // several write() calls' worth of page cache
  std::atomic<int> errors{0}, torn{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string mine(kBytes, static_cast<char>('a' + t));
      for (int i = 0; i < kWrites; ++i) {
        try {
          write_file_atomically(path, mine);
          // Whatever is there now is some writer's file, whole.
          const std::string seen = read_bytes(path);
          if (seen.size() != kBytes || seen.find_first_not_of(seen[0]) != std::string::npos) ++torn;
        } catch (const AtomicFileError&) {
          ++errors;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(temporaries(), Names{});
}

// A writer killed before its commit leaves its temporary; the next writer of
// that path removes it, but never the temporary of a writer still at work,
// nor files that only look similar.
TEST_F(AtomicFileTest, AbandonedTemporariesAreRemovedLiveOnesAreNot) {
  const std::string path = file("f.bin");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      AtomicFile out(path);
      out.write("dying", 5);
      ::raise(SIGKILL);  // no destructor, no cleanup: as a crash
    } catch (...) {
    }
    ::_exit(3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  const Names dead = temporaries();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_TRUE(is_atomic_temp_name(dead[0], "f.bin")) << dead[0];

  write_bytes(file("f.bin.tmp.Stale9"), "stale, unlocked");  // as from a crashed writer
  write_bytes(file("f.bin.tmp.toolong"), "not ours");
  write_bytes(file("g.bin.tmp.Stale9"), "another file's");
  AtomicFile live(path);
  live.write("live", 4);

  write_file_atomically(path, "done");
  EXPECT_EQ(read_bytes(path), "done");
  EXPECT_FALSE(fs::exists(file(dead[0])));
  EXPECT_FALSE(fs::exists(file("f.bin.tmp.Stale9")));
  EXPECT_TRUE(fs::exists(live.temp_path()));
  EXPECT_TRUE(fs::exists(file("f.bin.tmp.toolong")));
  EXPECT_TRUE(fs::exists(file("g.bin.tmp.Stale9")));
  live.commit();
  EXPECT_EQ(read_bytes(path), "live");
}

TEST_F(AtomicFileTest, TemporaryNames) {
  EXPECT_TRUE(is_atomic_temp_name("x.json.tmp.aZ09bc", "x.json"));
  EXPECT_FALSE(is_atomic_temp_name("x.json.tmp", "x.json"));
  EXPECT_FALSE(is_atomic_temp_name("x.json.tmp.aZ09b", "x.json"));
  EXPECT_FALSE(is_atomic_temp_name("x.json.tmp.aZ0-bc", "x.json"));
  EXPECT_FALSE(is_atomic_temp_name("y.json.tmp.aZ09bc", "x.json"));
}

TEST_F(AtomicFileTest, ErrorsNameTheFileAndTheStep) {
  const std::string missing = file("no/such/dir/f.bin");
  try {
    AtomicFile out(missing);
    ADD_FAILURE() << "expected AtomicFileError";
  } catch (const AtomicFileError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(missing + ".tmp."), std::string::npos) << what;
    EXPECT_NE(what.find("No such file or directory"), std::string::npos) << what;
  }
  // The rename fails (the target is a non-empty directory).
  const std::string dir_target = file("target");
  fs::create_directories(dir_target + "/child");
  try {
    AtomicFile out(dir_target);
    out.write("x", 1);
    out.commit();
    ADD_FAILURE() << "expected AtomicFileError";
  } catch (const AtomicFileError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot rename"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_directory(dir_target + "/child"));
  EXPECT_EQ(temporaries(), Names{});
}

// A write that fails half way (here: the file size limit, standing in for a
// full disk) is an error naming the temporary, and the old file stays.
TEST_F(AtomicFileTest, FailedWriteIsAnErrorNotATornFile) {
  const std::string path = file("f.bin");
  write_file_atomically(path, "old");
  try {
    const testing_support::FileSizeLimit limit(16);
    AtomicFile out(path);
    out.write(std::string(64, 'x').data(), 64);
    out.commit();
    ADD_FAILURE() << "expected AtomicFileError";
  } catch (const AtomicFileError& e) {
    EXPECT_NE(std::string(e.what()).find("File too large"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path + ".tmp."), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(path), "old");
  EXPECT_EQ(temporaries(), Names{});
}

}  // namespace
}  // namespace dyt::checkpoint
