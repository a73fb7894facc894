// checkpoint/boxes.h: the tiling check and the intersection copy.
#include "checkpoint/boxes.h"

#include <gtest/gtest.h>

#include <vector>

namespace dyt::checkpoint {
namespace {

TEST(Boxes, TilingIsExactlyOnce) {
  const std::vector<int64_t> shape{4, 6};
  // Two column blocks, the second cut into a row and the rest.
  EXPECT_EQ(tiling_problem(shape, {{{0, 0}, {4, 3}}, {{1, 3}, {3, 3}}, {{0, 3}, {1, 3}}}), "");
  EXPECT_EQ(tiling_problem(shape, {{{0, 0}, {4, 3}}, {{1, 3}, {3, 3}}}), "the pieces leave 3 of 24 elements uncovered");
  // An overlap found whatever the order, named by the lower index first.
  EXPECT_EQ(tiling_problem(shape, {{{2, 2}, {2, 4}}, {{0, 0}, {4, 3}}, {{0, 3}, {2, 3}}}),
            "piece 0 [offset [2, 2], extent [2, 4]] overlaps piece 1 [offset [0, 0], extent [4, 3]]");
  EXPECT_EQ(tiling_problem(shape, {{{0, 0}, {4, 6}}, {{0, 0}, {4, 6}}}),
            "piece 0 [offset [0, 0], extent [4, 6]] overlaps piece 1 [offset [0, 0], extent [4, 6]]");
  EXPECT_EQ(tiling_problem(shape, {{{0, 4}, {4, 3}}}),
            "piece 0 [offset [0, 4], extent [4, 3]] lies outside the tensor's shape [4, 6]");
  EXPECT_EQ(tiling_problem(shape, {{{0}, {4}}}), "piece 0 [offset [0], extent [4]] does not have the tensor's 2 dimensions");
  // Extents near int64's limit cannot overflow the count.
  const int64_t big = int64_t{1} << 62;
  EXPECT_EQ(tiling_problem({big}, {{{0}, {big}}, {{0}, {big}}, {{0}, {big}}}),
            "piece 0 [offset [0], extent [4611686018427387904]] overlaps piece 1 [offset [0], extent [4611686018427387904]]");
  EXPECT_EQ(tiling_problem({}, {{{}, {}}}), "");
  EXPECT_EQ(tiling_problem({}, {{{}, {}}, {{}, {}}}), "2 pieces for a tensor of one element (shape [])");
}

TEST(Boxes, CopyOfTheIntersectionIn3D) {
  // src: [2, 3, 4] at offset [1, 0, 2]; dst: [3, 2, 3] at offset [0, 1, 3].
  const Box src{{1, 0, 2}, {2, 3, 4}}, dst{{0, 1, 3}, {3, 2, 3}};
  std::vector<float> s(24);
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<float>(i);
  std::vector<float> out(18, -1.0f);
  // Shared: dim 0 [1, 3), dim 1 [1, 3), dim 2 [3, 6): 2 x 2 x 3 elements.
  EXPECT_EQ(copy_intersection(src, s.data(), dst, out.data()), 12);
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t c = 0; c < 3; ++c) {
        const int64_t g0 = a, g1 = b + 1, g2 = c + 3;
        const float want = g0 >= 1 ? static_cast<float>(((g0 - 1) * 3 + g1) * 4 + (g2 - 2)) : -1.0f;
        EXPECT_EQ(out[(a * 2 + b) * 3 + c], want) << a << " " << b << " " << c;
      }
  EXPECT_EQ(copy_intersection(src, s.data(), Box{{0, 0, 0}, {1, 3, 3}}, out.data()), 0);
}

}  // namespace
}  // namespace dyt::checkpoint
