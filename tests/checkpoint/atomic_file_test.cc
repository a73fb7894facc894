#include "checkpoint/atomic_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "tests/common/scratch_dir_test.h"

namespace dyt::checkpoint {
namespace {

namespace fs = std::filesystem;
using testing_support::read_bytes;

class AtomicFileTest : public testing_support::ScratchDirTest {
 protected:
  AtomicFileTest() : ScratchDirTest("atomic_file") {}
};

TEST_F(AtomicFileTest, CommitReplacesTheFileWhole) {
  const std::string path = file("f.bin");
  {
    AtomicFile out(path);
    out.write("old", 3);
    out.commit();
  }
  {
    AtomicFile out(path);
    out.write("new ", 4);
    EXPECT_EQ(read_bytes(path), "old");  // nothing visible before commit
    EXPECT_TRUE(fs::exists(out.temp_path()));
    out.write("contents", 8);
    out.commit();
  }
  EXPECT_EQ(read_bytes(path), "new contents");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

// A writer that throws half way (the caller's own error, not an I/O one)
// leaves the old file and no temporary behind.
TEST_F(AtomicFileTest, AbandonedWriteKeepsTheOldFile) {
  const std::string path = file("f.bin");
  {
    AtomicFile out(path);
    out.write("old", 3);
    out.commit();
  }
  try {
    AtomicFile out(path);
    out.write("half", 4);
    throw std::runtime_error("caller gave up");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(read_bytes(path), "old");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(AtomicFileTest, ErrorsNameTheFileAndTheStep) {
  const std::string missing = file("no/such/dir/f.bin");
  try {
    AtomicFile out(missing);
    ADD_FAILURE() << "expected AtomicFileError";
  } catch (const AtomicFileError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(missing + ".tmp"), std::string::npos) << what;
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
  EXPECT_FALSE(fs::exists(dir_target + ".tmp"));
}

TEST_F(AtomicFileTest, FullDiskIsAnErrorNotATornFile) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  // /dev/full accepts open and fails every write with ENOSPC; it stands in
  // for the temporary so the write path meets a full disk.
  const std::string path = file("f.bin");
  fs::create_symlink("/dev/full", path + ".tmp");
  try {
    AtomicFile out(path);
    out.write("data", 4);
    out.commit();
    ADD_FAILURE() << "expected AtomicFileError";
  } catch (const AtomicFileError& e) {
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace
}  // namespace dyt::checkpoint
