#include "parallel/mesh.h"

#include <gtest/gtest.h>

#include <vector>

#include "parallel/communicator.h"

namespace dyt::parallel {
namespace {

TEST(Mesh, TensorParallelIsInnermost) {
  // dp = 3, tp = 2: ranks 0,1 are replica 0; 2,3 replica 1; 4,5 replica 2.
  for (int r = 0; r < 6; ++r) {
    const Mesh m = Mesh::make(6, r, 3, 2);
    EXPECT_EQ(m.dp_rank, r / 2);
    EXPECT_EQ(m.tp_rank, r % 2);
    EXPECT_EQ(m.dp_rank * m.tp + m.tp_rank, r);
  }
}

TEST(Mesh, LayoutsTheWorldCannotHoldAreNamed) {
  try {
    Mesh::make(1, 0, 2, 1);
    ADD_FAILURE() << "expected LayoutError";
  } catch (const LayoutError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("parallel.dp"), std::string::npos) << what;
    EXPECT_NE(what.find("1 process was started"), std::string::npos) << what;
    EXPECT_NE(what.find("mpirun -np 2"), std::string::npos) << what;
  }
  EXPECT_THROW(Mesh::make(4, 0, 0, 4), LayoutError);
  EXPECT_THROW(Mesh::make(4, 4, 2, 2), LayoutError);
  EXPECT_NO_THROW(Mesh::make(4, 3, 2, 2));
}

TEST(LocalCommunicator, CollectivesAreTheIdentity) {
  LocalCommunicator c;
  std::vector<float> f{1.5f, -2.0f};
  std::vector<double> d{3.25};
  c.allreduce_sum(f.data(), f.size());
  c.allreduce_sum(d.data(), d.size());
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(d, (std::vector<double>{3.25}));
  EXPECT_EQ(c.allreduce_max(7), 7);
  EXPECT_EQ(c.size(), 1);
}

}  // namespace
}  // namespace dyt::parallel
