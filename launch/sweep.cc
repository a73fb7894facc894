#include "launch/sweep.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "configs/config.h"

namespace dyt::launch {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Characters safe in a directory name; others become '-'.
std::string safe(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '-';
  return out;
}

// The number after "key": in one of our metrics lines; NaN for null or absent.
double number_after(const std::string& line, const std::string& key) {
  const auto at = line.find("\"" + key + "\": ");
  if (at == std::string::npos) return std::numeric_limits<double>::quiet_NaN();
  const char* p = line.c_str() + at + key.size() + 4;
  if (std::string_view(p).starts_with("null")) return std::numeric_limits<double>::quiet_NaN();
  return std::strtod(p, nullptr);
}

std::string num(double v) {
  if (!std::isfinite(v)) return "–";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

std::string json_num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string value_of(const SweepPoint& p, size_t axis) {
  const std::string& o = p.overrides[axis];
  return o.substr(o.find('=') + 1);
}

}  // namespace

std::vector<SweepAxis> parse_sweep(const std::string& spec) {
  std::vector<SweepAxis> axes;
  std::set<std::string> seen;
  for (const std::string& part : split(spec, ';')) {
    const std::string p = trim(part);
    if (p.empty()) continue;
    const auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      throw config::ConfigError("--sweep: '" + p + "' is not field=value,value,...");
    SweepAxis a;
    a.path = trim(p.substr(0, eq));
    for (const std::string& v : split(p.substr(eq + 1), ',')) {
      if (trim(v).empty()) throw config::ConfigError("--sweep: " + a.path + " has an empty value");
      a.values.push_back(trim(v));
    }
    if (!seen.insert(a.path).second) throw config::ConfigError("--sweep: " + a.path + " given twice");
    axes.push_back(std::move(a));
  }
  if (axes.empty()) throw config::ConfigError("--sweep: no field to sweep");
  return axes;
}

std::vector<SweepPoint> expand(const std::vector<SweepAxis>& axes) {
  std::vector<SweepPoint> points{SweepPoint{}};
  for (const SweepAxis& a : axes) {
    std::vector<SweepPoint> next;
    for (const SweepPoint& p : points) {
      for (const std::string& v : a.values) {
        SweepPoint q = p;
        const std::string leaf = a.path.substr(a.path.find_last_of('.') + 1);
        if (!q.name.empty()) q.name += '_';
        q.name += safe(leaf);
        q.name += '=';
        q.name += safe(v);
        q.overrides.push_back(a.path + "=" + v);
        next.push_back(std::move(q));
      }
    }
    points = std::move(next);
  }
  return points;
}

const char* status_name(RunStatus s) {
  switch (s) {
    case RunStatus::kFinished: return "finished";
    case RunStatus::kDiverged: return "diverged";
    case RunStatus::kUnfinished: return "unfinished";
    default: return "failed";
  }
}

RunResult read_result(const SweepPoint& point, int exit_code, const std::string& metrics_path) {
  RunResult r;
  r.point = point;
  r.exit_code = exit_code;
  r.train_loss = r.val_loss = std::numeric_limits<double>::quiet_NaN();
  bool skipped = false;
  std::ifstream in(metrics_path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"val_loss\": ") != std::string::npos) {
      // The evaluation before any training says nothing about this run's α₀.
      if (number_after(line, "step") > 0) r.val_loss = number_after(line, "val_loss");
    } else if (line.find("\"loss\": ") != std::string::npos) {
      r.steps = static_cast<int64_t>(number_after(line, "step"));
      r.train_loss = number_after(line, "loss");
      skipped = skipped || line.find("\"skipped\": true") != std::string::npos;
    }
  }
  r.status = exit_code < 0                  ? RunStatus::kUnfinished
             : exit_code == 0              ? RunStatus::kFinished
             : (exit_code == 1 && skipped) ? RunStatus::kDiverged
                                           : RunStatus::kFailed;
  return r;
}

std::string read_sweep_spec(const std::string& out_dir) {
  const std::string path = out_dir + "/" + kSpecFile;
  std::ifstream in(path);
  if (!in) throw config::ConfigError(path + ": cannot read it (is " + out_dir + " a dyt-sweep --out directory?)");
  std::string spec;
  std::getline(in, spec);
  if (trim(spec).empty()) throw config::ConfigError(path + ": empty, expected the --sweep text");
  return spec;
}

int read_exit_code(const std::string& path) {
  std::ifstream in(path);
  if (!in) return -1;
  std::string text;
  std::getline(in, text);
  text = trim(text);
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < 0 || v > 255)
    throw config::ConfigError(path + ": expected an exit code 0-255, got '" + text + "'");
  return static_cast<int>(v);
}

std::vector<RunResult> collect_results(const std::string& out_dir, const std::vector<SweepPoint>& points) {
  std::vector<RunResult> results;
  for (const SweepPoint& p : points) {
    const std::string dir = out_dir + "/" + p.name;
    results.push_back(read_result(p, read_exit_code(dir + "/" + kExitCodeFile), dir + "/metrics.jsonl"));
  }
  return results;
}

std::string results_markdown(const std::vector<SweepAxis>& axes, std::vector<RunResult> results) {
  const auto key = [](const RunResult& r) {
    const double l = std::isfinite(r.val_loss) ? r.val_loss : r.train_loss;
    return std::pair{r.status != RunStatus::kFinished, std::isfinite(l) ? l : 1e300};
  };
  std::stable_sort(results.begin(), results.end(),
                   [&](const RunResult& a, const RunResult& b) { return key(a) < key(b); });
  std::ostringstream o;
  o << "|";
  for (const SweepAxis& a : axes) o << " " << a.path << " |";
  o << " status | steps | train loss | val loss | run |\n|";
  for (size_t i = 0; i < axes.size() + 5; ++i) o << "---|";
  o << "\n";
  for (const RunResult& r : results) {
    o << "|";
    for (size_t i = 0; i < axes.size(); ++i) o << " " << value_of(r.point, i) << " |";
    o << " " << (r.status == RunStatus::kFinished ? "finished" : std::string("**") + status_name(r.status) + "**")
      << " | " << r.steps << " | " << num(r.train_loss) << " | " << num(r.val_loss) << " | "
      << r.point.name << " |\n";
  }
  return o.str();
}

std::string results_jsonl(const std::vector<SweepAxis>& axes, const std::vector<RunResult>& results) {
  std::ostringstream o;
  for (const RunResult& r : results) {
    o << "{\"run\": \"" << r.point.name << "\"";
    for (size_t i = 0; i < axes.size(); ++i) o << ", \"" << axes[i].path << "\": \"" << value_of(r.point, i) << "\"";
    o << ", \"status\": \"" << status_name(r.status) << "\", \"exit_code\": " << r.exit_code
      << ", \"steps\": " << r.steps << ", \"train_loss\": " << json_num(r.train_loss)
      << ", \"val_loss\": " << json_num(r.val_loss) << "}\n";
  }
  return o.str();
}

}  // namespace dyt::launch
