// The sweep's launchers without a scheduler: the command lines, the Slurm
// array script (run through bash with fake srun/scontrol so that its signal
// handling and exit_code files are exercised), sbatch's answer, and collect's
// reading of run directories. The real Slurm is in check_slurm_sweep.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "configs/config.h"
#include "launch/launcher.h"
#include "launch/process.h"
#include "launch/sweep.h"

namespace dyt::launch {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("dyt_launcher_test_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Launcher, ParsesNamesAndRefusesOthers) {
  EXPECT_EQ(parse_launcher("local"), LauncherKind::kLocal);
  EXPECT_EQ(parse_launcher("mpirun"), LauncherKind::kMpirun);
  EXPECT_EQ(parse_launcher("slurm"), LauncherKind::kSlurm);
  try {
    parse_launcher("pbs");
    FAIL() << "pbs accepted";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--launcher must be local, mpirun or slurm, got 'pbs'"), std::string::npos);
  }
}

TEST(Launcher, MpirunPrefixesTheTrainCommand) {
  LaunchOptions o;
  const std::vector<std::string> train{"dyt-train", "--config", "c.pbtxt"};
  EXPECT_EQ(run_command(o, train), train);
  o.kind = LauncherKind::kMpirun;
  o.np = 4;
  o.mpirun = "/opt/mpi/bin/mpirun";
  o.mpirun_args = split_words("  --hostfile hosts\t--map-by ppr:4:node ");
  EXPECT_EQ(run_command(o, train),
            (std::vector<std::string>{"/opt/mpi/bin/mpirun", "-np", "4", "--hostfile", "hosts", "--map-by",
                                      "ppr:4:node", "dyt-train", "--config", "c.pbtxt"}));
}

TEST(Launcher, ShellQuoteRoundTripsThroughBash) {
  for (const std::string s : {"plain/path-1.0", "", "a b", "it's", "$HOME", "x;rm -rf y", "attention=0.8_lr=1e30",
                              "train.metrics_file=", "\"q\"", "back\\slash", "*"}) {
    const Captured c = run_captured({"bash", "-c", "printf %s " + shell_quote(s)});
    EXPECT_EQ(c.status, 0) << s;
    EXPECT_EQ(c.out, s) << "quoted as " << shell_quote(s);
  }
  EXPECT_EQ(shell_quote("configs/tiny.pbtxt"), "configs/tiny.pbtxt");
}

TEST(Launcher, SbatchJobId) {
  EXPECT_EQ(parse_sbatch_job_id("Submitted batch job 4321\n"), "4321");
  EXPECT_EQ(parse_sbatch_job_id("17;cluster\n"), "17");
  EXPECT_THROW(parse_sbatch_job_id("sbatch: error: Batch job submission failed"), std::runtime_error);
}

TEST(Launcher, ArrayScriptHeader) {
  LaunchOptions o;
  o.kind = LauncherKind::kSlurm;
  o.np = 2;
  o.concurrent = 3;
  o.notice_seconds = 300;
  const std::vector<LaunchRun> runs{{"a", "/o/a", {"t", "--set", "x=1"}}, {"b", "/o/b", {"t"}}};
  const std::string s = slurm_array_script(o, "/work dir", "/o/slurm", runs);
  for (const char* line : {"#SBATCH --array=0-1%3\n", "#SBATCH --ntasks=2\n", "#SBATCH --chdir='/work dir'\n",
                           "#SBATCH --output=/o/slurm/%A_%a.out\n", "#SBATCH --requeue\n",
                           "#SBATCH --signal=B:USR1@300\n", "#SBATCH --open-mode=append\n"})
    EXPECT_NE(s.find(line), std::string::npos) << line << " missing from\n" << s;
  o.concurrent = 0;  // no limit: the scheduler decides
  EXPECT_NE(slurm_array_script(o, "/w", "/o/slurm", runs).find("#SBATCH --array=0-1\n"), std::string::npos);
  EXPECT_EQ(run_captured({"bash", "-n", "-c", s}).status, 0) << "not valid bash:\n" << s;
}

// The array script under bash with a fake srun (runs the command, or waits
// for a signal) and a fake scontrol (records its arguments).
class ArrayScript : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_dir("array_script");
    fs::create_directories(dir_ / "bin");
    write(dir_ / "bin" / "srun",
          "#!/bin/bash\n[ \"$1\" = --kill-on-bad-exit=1 ] || exit 99\nshift\n"
          "trap 'echo fake-train got USR1; kill $c; exit 0' USR1\n\"$@\" &\nc=$!\nwait $c\n");
    write(dir_ / "bin" / "scontrol", "#!/bin/bash\necho \"$@\" >\"$FAKE_SCONTROL_LOG\"\n");
    fs::permissions(dir_ / "bin" / "srun", fs::perms::owner_all);
    fs::permissions(dir_ / "bin" / "scontrol", fs::perms::owner_all);
    LaunchOptions o;
    o.kind = LauncherKind::kSlurm;
    runs_ = {{"ok", (dir_ / "ok").string(), {"bash", "-c", "echo trained; exit 0"}},
             {"diverges", (dir_ / "diverges").string(), {"bash", "-c", "exit 1"}},
             {"long", (dir_ / "long").string(), {"sleep", "30"}}};
    write(dir_ / "job.sh", slurm_array_script(o, dir_.string(), (dir_ / "slurm").string(), runs_));
  }
  void TearDown() override { fs::remove_all(dir_.parent_path()); }
  Captured run_index(int i, const std::string& then = "") {
    const std::string env = "PATH=" + (dir_ / "bin").string() + ":$PATH SLURM_ARRAY_TASK_ID=" + std::to_string(i) +
                            " SLURM_ARRAY_JOB_ID=7 SLURM_JOB_ID=" + std::to_string(8 + i) +
                            " FAKE_SCONTROL_LOG=" + (dir_ / "scontrol.log").string();
    return run_captured({"bash", "-c", env + " bash " + (dir_ / "job.sh").string() + " & " + then + " wait $!"});
  }
  fs::path dir_;
  std::vector<LaunchRun> runs_;
};

TEST_F(ArrayScript, EachIndexRunsItsRunAndRecordsTheExitCode) {
  EXPECT_EQ(run_index(0).status, 0);
  EXPECT_EQ(read_exit_code((dir_ / "ok" / kExitCodeFile).string()), 0);
  EXPECT_NE(read(dir_ / "ok" / "train.log").find("trained"), std::string::npos);
  EXPECT_NE(read(dir_ / "ok" / "train.log").find("job 7_0 (id 8, restart 0)"), std::string::npos);
  EXPECT_EQ(run_index(1).status, 1);
  EXPECT_EQ(read_exit_code((dir_ / "diverges" / kExitCodeFile).string()), 1);
  EXPECT_EQ(run_index(9).status, 2);
}

TEST_F(ArrayScript, TheNoticeIsForwardedAndTheIndexRequeuesItself) {
  // USR1 to the batch shell (what --signal=B:USR1@T sends) once srun runs.
  const Captured c = run_index(2, "sleep 1; kill -USR1 $!;");
  EXPECT_EQ(c.status, 0) << c.out;
  EXPECT_FALSE(fs::exists(dir_ / "long" / kExitCodeFile)) << "a run stopped on notice is not finished";
  EXPECT_EQ(read(dir_ / "scontrol.log"), "requeue 10\n");
  const std::string log = read(dir_ / "long" / "train.log");
  EXPECT_NE(log.find("fake-train got USR1"), std::string::npos) << log;
  EXPECT_NE(log.find("requeued to continue from the checkpoint"), std::string::npos) << log;
}

TEST(Collect, ReadsEachRunDirectory) {
  const fs::path out = fresh_dir("collect");
  const auto points = expand(parse_sweep("model.alpha_init.attention=0.5,1.0;train.lr=0.003"));
  ASSERT_EQ(points.size(), 2u);
  fs::create_directories(out / points[0].name);
  write(out / points[0].name / kExitCodeFile, "0\n");
  write(out / points[0].name / "metrics.jsonl",
        "{\"step\": 0, \"val_loss\": 8.5}\n{\"step\": 1, \"loss\": 8.25, \"skipped\": false}\n"
        "{\"step\": 1, \"val_loss\": 8.125}\n");
  fs::create_directories(out / points[1].name);  // started, no exit code yet
  write(out / points[1].name / "metrics.jsonl", "{\"step\": 1, \"loss\": 8.5, \"skipped\": false}\n");
  const auto results = collect_results(out.string(), points);
  EXPECT_EQ(results[0].status, RunStatus::kFinished);
  EXPECT_EQ(results[0].val_loss, 8.125);
  EXPECT_EQ(results[1].status, RunStatus::kUnfinished);
  EXPECT_EQ(results[1].exit_code, -1);
  EXPECT_NE(results_markdown(parse_sweep("model.alpha_init.attention=0.5,1.0;train.lr=0.003"), results)
                .find("**unfinished**"),
            std::string::npos);

  write(out / points[1].name / kExitCodeFile, "oops\n");
  EXPECT_THROW(collect_results(out.string(), points), config::ConfigError);
  EXPECT_THROW(read_sweep_spec(out.string()), config::ConfigError);  // no sweep.spec
  write(out / kSpecFile, "train.lr=1,2\n");
  EXPECT_EQ(read_sweep_spec(out.string()), "train.lr=1,2");
  fs::remove_all(out.parent_path());
}

}  // namespace
}  // namespace dyt::launch
