// Support for tests that write files: a GoogleTest fixture with a fresh
// directory per test, removed afterwards (<tmp>/dyt_<prefix>_<pid>_<test
// name>/), and whole-file reads and writes.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace dyt::testing_support {

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Creates the file's directory first.
inline void write_bytes(const std::string& path, const std::string& bytes) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class ScratchDirTest : public ::testing::Test {
 protected:
  explicit ScratchDirTest(std::string prefix) : prefix_(std::move(prefix)) {}
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("dyt_" + prefix_ + "_" + std::to_string(::getpid()) + "_" + info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // A path inside the scratch directory.
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  // Names in the scratch directory that hold ".tmp": what a writer left
  // behind (its temporaries are `<name>.tmp.XXXXXX`).
  std::vector<std::string> temporaries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      if (e.path().filename().string().find(".tmp") != std::string::npos)
        out.push_back(e.path().filename().string());
    return out;
  }

  std::filesystem::path dir_;

 private:
  std::string prefix_;
};

}  // namespace dyt::testing_support
