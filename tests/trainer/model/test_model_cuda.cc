// The whole model on the CUDA backend against the CPU backend: one step's
// loss and every gradient (FP32 against the golden files and a live CPU run),
// BF16's loss, a short training run, repeatability and resume. Built twice:
// against the real CUDA libraries (tests skip without a GPU) and against the
// host emulator and the cuBLASLt stand-in (DYT_CUDA_EMU), so CI runs the
// whole CUDA step's logic on every change.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/trainer/model/model_cases.h"
#include "trainer/grad_norm.h"
#include "trainer/model_instance.h"
#include "trainer/optimizer.h"

namespace dyt::trainer {
namespace {

using kernels::DType;
using test::ModelCase;

#ifdef DYT_CUDA_EMU
constexpr int kTrainSteps = 8;  // the emulator runs every thread on the CPU
#else
constexpr int kTrainSteps = 50;
#endif

// The backend of the first GPU, or null (and the test skips) without one.
std::unique_ptr<kernels::Backend> gpu() {
  try {
    return cuda::make_cuda_backend();
  } catch (const cuda::NoDeviceError& e) {
    std::printf("[ skipped  ] %s\n", e.what());
    return nullptr;
  }
}
#define DYT_GPU_OR_SKIP(var)                     \
  const auto var = gpu();                        \
  if (!var) GTEST_SKIP() << "no CUDA device";

// |a − e| <= tol · (|e| + rms(e)) for every element; the worst ratio.
double worst_ratio(const float* a, const float* e, int64_t n, double tol) {
  double rms = 0;
  for (int64_t i = 0; i < n; ++i) rms += double(e[i]) * e[i];
  rms = std::sqrt(rms / std::max<int64_t>(n, 1));
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double r = std::fabs(double(a[i]) - e[i]) / (tol * (std::fabs(e[i]) + rms) + 1e-30);
    worst = std::isnan(r) ? INFINITY : std::max(worst, r);
  }
  return worst;
}

void expect_grads_close(const ParamLayout& layout, const std::vector<float>& got,
                        const std::vector<float>& want, double tol, const std::string& what) {
  for (const ParamEntry& e : layout.entries()) {
    const double r = worst_ratio(got.data() + e.offset, want.data() + e.offset, e.numel, tol);
    EXPECT_LE(r, 1.0) << what << ": " << e.name << " off by " << r << "x the bound " << tol;
  }
}

struct StepResult {
  double loss = 0;
  std::vector<float> grads;
};

StepResult one_step(const ModelCase& c, kernels::Backend& be, DType dt) {
  ModelInstance m(test::case_model(c), test::kCaseBatch, test::kCaseSeq, false, be, dt);
  m.init(test::kCaseSeed);
  const auto tokens = test::case_ids(m.dims().vocab, 1), targets = test::case_ids(m.dims().vocab, 2);
  const int64_t n = test::kCaseBatch * test::kCaseSeq;
  StepResult r;
  r.loss = m.forward_backward(tokens.data(), targets.data(), 1.0f / n) / n;
  r.grads = m.params().grads_to_host();
  return r;
}

TEST(ModelCuda, Fp32StepMatchesTheCpuBackend) {
  DYT_GPU_OR_SKIP(be);
  for (const ModelCase& c : test::model_cases()) {
    const StepResult g = one_step(c, *be, DType::F32);
    const StepResult cpu = one_step(c, kernels::cpu_backend(), DType::F32);
    EXPECT_NEAR(g.loss, cpu.loss, 1e-5 * std::fabs(cpu.loss)) << c.name;
    ModelInstance shape(test::case_model(c), 1, 1, false);
    expect_grads_close(shape.layout(), g.grads, cpu.grads, 1e-4, c.name + " vs the CPU backend");
    // The golden file: what the CPU backend computed when it was written.
    const auto golden = checkpoint::read_safetensors(test::golden_path(c));
    EXPECT_NEAR(g.loss, golden.at("loss").data[0], 1e-5 * std::fabs(cpu.loss)) << c.name;
    for (const ParamEntry& e : shape.layout().entries()) {
      const double r = worst_ratio(g.grads.data() + e.offset, golden.at(e.name).data.data(), e.numel, 1e-4);
      EXPECT_LE(r, 1.0) << c.name << " vs golden: " << e.name << " off by " << r << "x";
    }
  }
}

TEST(ModelCuda, Bf16LossWithinTwoPercent) {
  DYT_GPU_OR_SKIP(be);
  for (const ModelCase& c : test::model_cases()) {
    const StepResult g = one_step(c, *be, DType::BF16);
    const StepResult cpu = one_step(c, kernels::cpu_backend(), DType::F32);
    EXPECT_NEAR(g.loss, cpu.loss, 0.02 * std::fabs(cpu.loss)) << c.name;
    for (float x : g.grads) ASSERT_TRUE(std::isfinite(x)) << c.name;
  }
}

// A short training run: the paper's update (clip at 1, AdamW) at a fixed lr.
struct TrainRun {
  std::vector<double> losses;
  std::vector<float> params, exp_avg, exp_avg_sq;
  int64_t steps_taken = 0;
};

TrainRun train(const ModelCase& c, kernels::Backend& be, DType dt, int from, int to, const TrainRun* resume) {
  ModelInstance m(test::case_model(c), test::kCaseBatch, test::kCaseSeq, false, be, dt);
  config::TrainConfig t;
  AdamW opt(m.layout(), t, be);
  if (resume) {
    m.params().set_master(resume->params.data());
    opt.set_moments(resume->exp_avg.data(), resume->exp_avg_sq.data());
    opt.set_steps_taken(resume->steps_taken);
  } else {
    m.init(test::kCaseSeed);
  }
  kernels::Buffer norm = be.allocate(DType::F64, 1);
  const int64_t n = test::kCaseBatch * test::kCaseSeq;
  TrainRun r;
  for (int s = from; s < to; ++s) {
    // Two batches in turn: a run that learns lowers both losses.
    const auto tokens = test::case_ids(m.dims().vocab, 10 + 2 * (s % 2));
    const auto targets = test::case_ids(m.dims().vocab, 11 + 2 * (s % 2));
    m.params().zero_grads();
    r.losses.push_back(m.forward_backward(tokens.data(), targets.data(), 1.0f / n) / n);
    be.sum_squares(m.params().grads(), norm.flat());
    double sum = 0;
    be.download(norm.flat(), &sum);
    const double coef = clip_coefficient(std::sqrt(sum), 1.0);
    if (coef < 1.0) be.scale_inplace(m.params().grads(), static_cast<float>(coef));
    opt.step(m.params(), 3e-3);
  }
  r.params = m.params().master_to_host();
  r.exp_avg = opt.exp_avg_to_host();
  r.exp_avg_sq = opt.exp_avg_sq_to_host();
  r.steps_taken = opt.steps_taken();
  return r;
}

TEST(ModelCuda, TrainingFollowsTheCpuRunAndRepeats) {
  DYT_GPU_OR_SKIP(be);
  for (const ModelCase& c : {test::model_cases()[0], test::model_cases()[1]}) {
    const TrainRun cpu = train(c, kernels::cpu_backend(), DType::F32, 0, kTrainSteps, nullptr);
    const TrainRun a = train(c, *be, DType::F32, 0, kTrainSteps, nullptr);
    const TrainRun b = train(c, *be, DType::F32, 0, kTrainSteps, nullptr);
    ASSERT_EQ(a.losses.size(), cpu.losses.size());
    for (size_t s = 0; s < cpu.losses.size(); ++s)
      EXPECT_NEAR(a.losses[s], cpu.losses[s], 1e-4 * std::fabs(cpu.losses[s]))
          << c.name << " step " << s + 1;
    const size_t last = cpu.losses.size() - 2;  // the first batch's last visit
    EXPECT_LT(cpu.losses[last], cpu.losses[0] - 0.1) << c.name << ": the run did not learn";
    EXPECT_EQ(a.losses, b.losses) << c.name << ": two GPU runs differ";
    EXPECT_EQ(0, std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4))
        << c.name << ": two GPU runs end with different weights";
    const TrainRun bf = train(c, *be, DType::BF16, 0, kTrainSteps, nullptr);
    for (size_t s = 0; s < cpu.losses.size(); ++s)
      EXPECT_NEAR(bf.losses[s], cpu.losses[s], 0.02 * std::fabs(cpu.losses[s]))
          << c.name << " bf16 step " << s + 1;
  }
}

// Stopping after half the steps and going on from the saved state (master
// weights, moments, step count: what a checkpoint holds) gives the bits of
// the uninterrupted run, in FP32 and in BF16 (whose working copy is rebuilt
// from the master weights).
TEST(ModelCuda, ResumeIsBitIdentical) {
  DYT_GPU_OR_SKIP(be);
  const ModelCase c = test::model_cases()[0];
  for (DType dt : {DType::F32, DType::BF16}) {
    const TrainRun straight = train(c, *be, dt, 0, 6, nullptr);
    const TrainRun first = train(c, *be, dt, 0, 3, nullptr);
    const TrainRun second = train(c, *be, dt, 3, 6, &first);
    EXPECT_EQ(0, std::memcmp(straight.params.data(), second.params.data(), straight.params.size() * 4))
        << kernels::dtype_name(dt);
    EXPECT_EQ(std::vector<double>(straight.losses.begin() + 3, straight.losses.end()), second.losses)
        << kernels::dtype_name(dt);
  }
}

}  // namespace
}  // namespace dyt::trainer
