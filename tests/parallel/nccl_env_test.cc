// The NCCL determinism settings (parallel/nccl_env.h): unset ones are filled
// in, agreeing ones (in any case) are kept, a contradicting one is refused
// with its name and value, and DYT_NCCL_NONDETERMINISTIC=1 turns the refusal
// into a returned warning. Pure environment logic: runs without NCCL or a GPU.
#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "parallel/nccl_env.h"

namespace dyt::parallel {
namespace {

void clear_all() {
  for (const NcclSetting& s : nccl_deterministic_settings()) unsetenv(s.name);
  unsetenv("DYT_NCCL_NONDETERMINISTIC");
}

struct NcclEnv : ::testing::Test {
  void SetUp() override { clear_all(); }
  void TearDown() override { clear_all(); }
};

TEST_F(NcclEnv, UnsetSettingsAreFilledIn) {
  EXPECT_TRUE(pin_nccl_determinism().empty());
  EXPECT_STREQ(std::getenv("NCCL_ALGO"), "Ring");
  EXPECT_STREQ(std::getenv("NCCL_PROTO"), "Simple");
  EXPECT_STREQ(std::getenv("NCCL_NVLS_ENABLE"), "0");
  EXPECT_STREQ(std::getenv("NCCL_COLLNET_ENABLE"), "0");
}

TEST_F(NcclEnv, AgreeingSettingsAreKeptAsWritten) {
  setenv("NCCL_ALGO", "ring", 1);
  setenv("NCCL_PROTO", "SIMPLE", 1);
  EXPECT_TRUE(pin_nccl_determinism().empty());
  EXPECT_STREQ(std::getenv("NCCL_ALGO"), "ring");
  EXPECT_STREQ(std::getenv("NCCL_PROTO"), "SIMPLE");
}

TEST_F(NcclEnv, AContradictingSettingIsRefusedByName) {
  setenv("NCCL_ALGO", "Tree", 1);
  try {
    pin_nccl_determinism();
    ADD_FAILURE() << "expected runtime_error";
  } catch (const std::runtime_error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("NCCL_ALGO=Tree"), std::string::npos) << w;
    EXPECT_NE(w.find("needs NCCL_ALGO=Ring"), std::string::npos) << w;
    EXPECT_NE(w.find("DYT_NCCL_NONDETERMINISTIC=1"), std::string::npos) << w;
  }
  setenv("NCCL_ALGO", "Ring", 1);
  setenv("NCCL_NVLS_ENABLE", "1", 1);
  EXPECT_THROW(pin_nccl_determinism(), std::runtime_error);
}

TEST_F(NcclEnv, TheOverrideTurnsRefusalsIntoWarnings) {
  setenv("DYT_NCCL_NONDETERMINISTIC", "1", 1);
  setenv("NCCL_PROTO", "LL128", 1);
  setenv("NCCL_COLLNET_ENABLE", "1", 1);
  const auto d = pin_nccl_determinism();
  ASSERT_EQ(d.size(), 2u);
  EXPECT_NE(d[0].find("NCCL_PROTO=LL128"), std::string::npos) << d[0];
  EXPECT_NE(d[1].find("NCCL_COLLNET_ENABLE=1"), std::string::npos) << d[1];
  EXPECT_STREQ(std::getenv("NCCL_PROTO"), "LL128");  // the user's choice stands
  EXPECT_STREQ(std::getenv("NCCL_ALGO"), "Ring");    // the unset ones are still filled in
}

}  // namespace
}  // namespace dyt::parallel
