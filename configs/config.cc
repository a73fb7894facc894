#include "configs/config.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

namespace dyt::config {
namespace {

namespace pb = google::protobuf;

// Collects text-format parser errors as "NAME:LINE:COL: message" (1-based).
// The parser reports an unknown field name or enum value at the token after
// it (for an enum value that ends a block, the next line); such errors are
// moved back to the name itself.
class Collector : public pb::io::ErrorCollector {
 public:
  Collector(std::string name, const std::string& text) : name_(std::move(name)), text_(text) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (line >= 0) move_to_name(message, line, column);
    std::ostringstream s;
    s << name_;
    if (line >= 0) s << ":" << line + 1 << ":" << column + 1;
    s << ": " << message;
    errors_.push_back(s.str());
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  // Byte offset of 0-based (line, column), columns counting tabs to the next
  // multiple of 8 as the tokenizer does; npos if out of range.
  std::size_t offset_of(int line, int column) const {
    std::size_t pos = 0;
    for (int l = 0; l < line; ++l) {
      pos = text_.find('\n', pos);
      if (pos == std::string::npos) return pos;
      ++pos;
    }
    for (int c = 0; c < column && pos < text_.size() && text_[pos] != '\n'; ++pos)
      c = text_[pos] == '\t' ? (c / 8 + 1) * 8 : c + 1;
    return pos;
  }
  void position_of(std::size_t offset, int& line, int& column) const {
    line = 0;
    column = 0;
    for (std::size_t i = 0; i < offset; ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 0;
      } else {
        column = text_[i] == '\t' ? (column / 8 + 1) * 8 : column + 1;
      }
    }
  }
  void move_to_name(const std::string& message, int& line, int& column) const {
    std::string name;
    for (const char* key : {"has no field named \"", "Unknown enumeration value of \""}) {
      const auto k = message.find(key);
      if (k == std::string::npos) continue;
      const auto b = k + std::strlen(key);
      const auto e = message.find('"', b);
      if (e != std::string::npos) name = message.substr(b, e - b);
    }
    if (name.empty()) return;
    const std::size_t end = offset_of(line, column);
    if (end == std::string::npos || end < name.size()) return;
    const std::size_t at = text_.rfind(name, end - name.size());
    if (at == std::string::npos) return;
    position_of(at, line, column);
  }

  std::string name_;
  const std::string& text_;
  std::vector<std::string> errors_;
};

// Collects bare messages (for single values, where positions mean little).
class BareCollector : public pb::io::ErrorCollector {
 public:
  void AddError(int, pb::io::ColumnNumber, const std::string& message) override {
    if (!text.empty()) text += "; ";
    text += message;
  }
  std::string text;
};

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += "\n";
    out += l;
  }
  return out;
}

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::string type_name(const pb::FieldDescriptor* f) {
  if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM) return f->enum_type()->name();
  if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) return f->message_type()->name();
  return f->type_name();
}

std::string enum_values(const pb::EnumDescriptor* e) {
  std::string out;
  for (int i = 0; i < e->value_count(); ++i) {
    if (i) out += ", ";
    out += e->value(i)->name();
  }
  return out;
}

std::string field_names(const pb::Descriptor* d) {
  std::string out;
  for (int i = 0; i < d->field_count(); ++i) {
    if (i) out += ", ";
    out += d->field(i)->name();
  }
  return out;
}

std::string fmt(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

// Sets every unset singular scalar field to its schema default, recursing
// into (and creating) every singular message field.
void fill_defaults(pb::Message& msg) {
  const pb::Descriptor* d = msg.GetDescriptor();
  const pb::Reflection* r = msg.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) continue;
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      fill_defaults(*r->MutableMessage(&msg, f));
      continue;
    }
    if (r->HasField(msg, f)) continue;
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32: r->SetInt32(&msg, f, f->default_value_int32()); break;
      case pb::FieldDescriptor::CPPTYPE_INT64: r->SetInt64(&msg, f, f->default_value_int64()); break;
      case pb::FieldDescriptor::CPPTYPE_UINT32: r->SetUInt32(&msg, f, f->default_value_uint32()); break;
      case pb::FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(&msg, f, f->default_value_uint64()); break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE: r->SetDouble(&msg, f, f->default_value_double()); break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT: r->SetFloat(&msg, f, f->default_value_float()); break;
      case pb::FieldDescriptor::CPPTYPE_BOOL: r->SetBool(&msg, f, f->default_value_bool()); break;
      case pb::FieldDescriptor::CPPTYPE_ENUM: r->SetEnum(&msg, f, f->default_value_enum()); break;
      case pb::FieldDescriptor::CPPTYPE_STRING: r->SetString(&msg, f, f->default_value_string()); break;
      case pb::FieldDescriptor::CPPTYPE_MESSAGE: break;
    }
  }
}

// The DyT paper's table: width, α₀ attention, α₀ other (FFN and final).
struct AlphaRow {
  int64_t width;
  double attention, other;
};
constexpr AlphaRow kAlphaTable[] = {
    {1024, 1.0, 1.0}, {2048, 1.0, 0.5}, {4096, 0.8, 0.2}, {5120, 0.6, 0.15}, {8192, 0.2, 0.05},
};

}  // namespace

// ---- overrides --------------------------------------------------------------

void apply_override(RunConfig& cfg, const std::string& override_text) {
  const std::string where = "--set " + override_text;
  const auto eq = override_text.find('=');
  if (eq == std::string::npos)
    throw ConfigError(where + ": expected PATH=VALUE (e.g. train.lr=1e-4)");
  const std::string path = trim(override_text.substr(0, eq));
  const std::string value = trim(override_text.substr(eq + 1));
  if (path.empty()) throw ConfigError(where + ": empty field path");

  pb::Message* msg = &cfg;
  std::string walked;  // path so far, for messages
  const pb::FieldDescriptor* field = nullptr;
  std::size_t pos = 0;
  while (true) {
    const auto dot = path.find('.', pos);
    const std::string name = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    const pb::Descriptor* d = msg->GetDescriptor();
    field = d->FindFieldByName(name);
    const std::string here = walked.empty() ? name : walked + "." + name;
    if (name.empty() || field == nullptr) {
      throw ConfigError(where + ": unknown field path " + path + ": " +
                        (walked.empty() ? std::string("RunConfig") : walked + " (" + d->name() + ")") +
                        " has no field \"" + name + "\" (fields: " + field_names(d) + ")");
    }
    if (field->is_repeated())
      throw ConfigError(where + ": field " + here + " is repeated; overrides of repeated fields are not supported");
    if (dot == std::string::npos) break;
    if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE)
      throw ConfigError(where + ": unknown field path " + path + ": " + here + " is a " + type_name(field) +
                        ", not a message");
    msg = msg->GetReflection()->MutableMessage(msg, field);
    walked = here;
    pos = dot + 1;
  }

  const pb::Reflection* r = msg->GetReflection();
  if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING && (value.empty() || (value[0] != '"' && value[0] != '\''))) {
    r->SetString(msg, field, value);  // bare string
    return;
  }
  if (value.empty())
    throw ConfigError(where + ": missing value for " + path + " (" + type_name(field) + ")");

  pb::TextFormat::Parser parser;
  BareCollector errors;
  parser.RecordErrorsTo(&errors);
  parser.AllowPartialMessage(true);
  // Parse into a scratch message first so a failed parse leaves cfg unchanged.
  std::unique_ptr<pb::Message> scratch(msg->New());
  scratch->CopyFrom(*msg);
  if (!parser.ParseFieldValueFromString(value, field, scratch.get())) {
    std::string msg_text = where + ": bad value \"" + value + "\" for " + path + " (" + type_name(field) + ")";
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM)
      msg_text += "; expected one of " + enum_values(field->enum_type());
    if (!errors.text.empty()) msg_text += ": " + errors.text;
    throw ConfigError(msg_text);
  }
  msg->CopyFrom(*scratch);
}

// ---- loading ----------------------------------------------------------------

RunConfig parse_run_config(const std::string& text, const std::string& name,
                           const std::vector<std::string>& overrides) {
  RunConfig cfg;
  pb::TextFormat::Parser parser;
  Collector errors(name, text);
  parser.RecordErrorsTo(&errors);
  parser.AllowPartialMessage(true);  // required fields are checked after overrides
  if (!parser.ParseFromString(text, &cfg)) {
    if (errors.errors().empty()) throw ConfigError(name + ": cannot parse config");
    throw ConfigError(join_lines(errors.errors()));
  }

  for (const auto& o : overrides) apply_override(cfg, o);

  std::vector<std::string> missing;
  cfg.FindInitializationErrors(&missing);
  if (!missing.empty()) {
    std::vector<std::string> lines;
    for (const auto& m : missing) lines.push_back(name + ": missing required field " + m);
    throw ConfigError(join_lines(lines));
  }

  const auto problems = validate(cfg);
  if (!problems.empty()) {
    std::vector<std::string> lines;
    for (const auto& p : problems) lines.push_back(name + ": " + p);
    throw ConfigError(join_lines(lines));
  }
  return cfg;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw ConfigError(path + ": is a directory, not a config file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot read config file: " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": error reading config file");
  return parse_run_config(buf.str(), path, overrides);
}

// ---- validation -------------------------------------------------------------

std::vector<std::string> validate(const RunConfig& cfg) {
  std::vector<std::string> p;
  const ModelConfig& m = cfg.model();
  const ParallelConfig& par = cfg.parallel();
  const TrainConfig& t = cfg.train();
  const CheckpointConfig& ck = cfg.checkpoint();

  auto positive = [&](const std::string& field, int64_t v) {
    if (v <= 0) {
      p.push_back(field + ": must be > 0, got " + std::to_string(v));
      return false;
    }
    return true;
  };
  auto positive_real = [&](const std::string& field, double v) {
    if (!(v > 0) || !std::isfinite(v)) p.push_back(field + ": must be > 0 and finite, got " + fmt(v));
  };
  auto nonneg_real = [&](const std::string& field, double v) {
    if (!(v >= 0) || !std::isfinite(v)) p.push_back(field + ": must be >= 0 and finite, got " + fmt(v));
  };

  // Sizes.
  positive("model.vocab_size", m.vocab_size());
  const bool d_ok = positive("model.d_model", m.d_model());
  positive("model.n_layers", m.n_layers());
  const bool h_ok = positive("model.n_heads", m.n_heads());
  const bool kv_ok = !m.has_n_kv_heads() || positive("model.n_kv_heads", m.n_kv_heads());
  positive("model.ffn_hidden", m.ffn_hidden());
  const bool maxlen_ok = positive("model.max_seq_len", m.max_seq_len());
  const bool seq_ok = positive("train.seq_len", t.seq_len());
  const bool mb_ok = positive("train.micro_batch", t.micro_batch());
  const bool gbt_ok = positive("train.global_batch_tokens", t.global_batch_tokens());
  positive("train.steps", t.steps());

  // Head shapes.
  if (d_ok && h_ok) {
    if (m.d_model() % m.n_heads() != 0) {
      p.push_back("model.n_heads: " + std::to_string(m.n_heads()) + " does not divide model.d_model = " +
                  std::to_string(m.d_model()));
    } else if ((m.d_model() / m.n_heads()) % 2 != 0) {
      p.push_back("model.d_model: head dim d_model / n_heads = " + std::to_string(m.d_model() / m.n_heads()) +
                  " must be even (RoPE rotates pairs of channels)");
    }
  }
  if (h_ok && kv_ok && m.has_n_kv_heads() && m.n_heads() % m.n_kv_heads() != 0) {
    p.push_back("model.n_kv_heads: " + std::to_string(m.n_kv_heads()) + " does not divide model.n_heads = " +
                std::to_string(m.n_heads()));
  }

  // Norm.
  if (m.norm() == NORM_UNSPECIFIED)
    p.push_back("model.norm: must be set (RMSNORM, DYT or DYISRU)");
  if (m.norm_bias() && m.norm() != DYT && m.norm() != DYISRU)
    p.push_back("model.norm_bias: only DYT and DYISRU have a bias β; model.norm is " + NormKind_Name(m.norm()));
  if (m.has_alpha_init()) {
    const AlphaInit& a = m.alpha_init();
    if (a.has_attention()) positive_real("model.alpha_init.attention", a.attention());
    if (a.has_ffn()) positive_real("model.alpha_init.ffn", a.ffn());
    if (a.has_final()) positive_real("model.alpha_init.final", a.final());
  }
  positive_real("model.norm_eps", m.norm_eps());
  positive_real("model.init_std", m.init_std());
  positive_real("model.rope_theta", m.rope_theta());

  // Optimizer and schedule.
  positive_real("train.lr", t.lr());
  if (!(t.min_lr_ratio() >= 0 && t.min_lr_ratio() <= 1))
    p.push_back("train.min_lr_ratio: must be in [0, 1], got " + fmt(t.min_lr_ratio()));
  if (!(t.beta1() >= 0 && t.beta1() < 1)) p.push_back("train.beta1: must be in [0, 1), got " + fmt(t.beta1()));
  if (!(t.beta2() >= 0 && t.beta2() < 1)) p.push_back("train.beta2: must be in [0, 1), got " + fmt(t.beta2()));
  positive_real("train.adam_eps", t.adam_eps());
  nonneg_real("train.weight_decay", t.weight_decay());
  nonneg_real("train.grad_clip", t.grad_clip());
  positive_real("train.alpha_lr_multiplier", t.alpha_lr_multiplier());
  if (t.warmup_steps() < -1)
    p.push_back("train.warmup_steps: must be >= 0, or -1 for min(2000, steps/20); got " +
                std::to_string(t.warmup_steps()));
  if (t.log_every() < 1) p.push_back("train.log_every: must be >= 1, got " + std::to_string(t.log_every()));
  if (t.eval_every() < 0)
    p.push_back("train.eval_every: must be >= 0 (0 = never), got " + std::to_string(t.eval_every()));
  if (t.eval_batches() < 0)
    p.push_back("train.eval_batches: must be >= 0, got " + std::to_string(t.eval_batches()));
  if (t.max_nonfinite_steps() < 1)
    p.push_back("train.max_nonfinite_steps: must be >= 1, got " + std::to_string(t.max_nonfinite_steps()));
  if (t.precision() == PRECISION_UNSPECIFIED) p.push_back("train.precision: must be set (FP32 or BF16)");
  if (t.device() == DEVICE_UNSPECIFIED) p.push_back("train.device: must be set (CPU or CUDA)");
  if (t.device() == CPU && t.precision() == BF16)
    p.push_back("train.precision: BF16 needs train.device: CUDA (the CPU backend computes in FP32)");
  if (seq_ok && maxlen_ok && t.seq_len() > m.max_seq_len())
    p.push_back("train.seq_len: " + std::to_string(t.seq_len()) + " exceeds model.max_seq_len = " +
                std::to_string(m.max_seq_len()));

  // Parallel layout.
  const bool dp_ok = par.dp() >= 1;
  const bool tp_ok = par.tp() >= 1;
  if (!dp_ok) p.push_back("parallel.dp: must be >= 1, got " + std::to_string(par.dp()));
  if (!tp_ok) p.push_back("parallel.tp: must be >= 1, got " + std::to_string(par.tp()));
  if (tp_ok) {
    const std::string tp = "parallel.tp: " + std::to_string(par.tp());
    if (h_ok && m.n_heads() % par.tp() != 0)
      p.push_back(tp + " does not divide model.n_heads = " + std::to_string(m.n_heads()) +
                  " (query heads are split over tp ranks)");
    // KV heads split over the ranks, or with fewer KV heads than ranks each
    // replicated over tp / n_kv_heads ranks (docs/parallel.md).
    const int64_t kv = h_ok && kv_ok ? kv_heads(m) : 0;
    if (kv >= par.tp() && kv % par.tp() != 0)
      p.push_back(tp + " does not divide the KV heads = " + std::to_string(kv) +
                  (m.has_n_kv_heads() ? " (model.n_kv_heads)" : " (model.n_heads)") +
                  "; with at least as many KV heads as ranks they are split over tp ranks");
    if (kv > 0 && kv < par.tp() && par.tp() % kv != 0)
      p.push_back(tp + " is not a multiple of the KV heads = " + std::to_string(kv) +
                  " (model.n_kv_heads); with fewer KV heads than ranks each is replicated over "
                  "tp / n_kv_heads ranks");
    if (m.ffn_hidden() > 0 && m.ffn_hidden() % par.tp() != 0)
      p.push_back(tp + " does not divide model.ffn_hidden = " + std::to_string(m.ffn_hidden()) +
                  " (gate/up columns are split over tp ranks)");
    if (m.vocab_size() > 0 && m.vocab_size() % par.tp() != 0)
      p.push_back(tp + " does not divide model.vocab_size = " + std::to_string(m.vocab_size()) +
                  " (embedding and LM head are split by vocabulary)");
    if (par.sequence_parallel() && seq_ok && t.seq_len() % par.tp() != 0)
      p.push_back(tp + " does not divide train.seq_len = " + std::to_string(t.seq_len()) +
                  " (parallel.sequence_parallel splits sequences over tp ranks)");
  }
  if (par.grad_bucket_elements() < 1)
    p.push_back("parallel.grad_bucket_elements: must be >= 1, got " + std::to_string(par.grad_bucket_elements()));
  if (seq_ok && mb_ok && gbt_ok && dp_ok) {
    // Guard the product against overflow before taking the remainder.
    const __int128 per_step = static_cast<__int128>(t.seq_len()) * t.micro_batch() * par.dp();
    if (per_step > t.global_batch_tokens() || t.global_batch_tokens() % static_cast<int64_t>(per_step) != 0) {
      p.push_back("train.global_batch_tokens: " + std::to_string(t.global_batch_tokens()) +
                  " is not a positive multiple of train.seq_len * train.micro_batch * parallel.dp = " +
                  std::to_string(t.seq_len()) + " * " + std::to_string(t.micro_batch()) + " * " +
                  std::to_string(par.dp()));
    }
  }

  // Checkpoints.
  if (ck.every_steps() < 0)
    p.push_back("checkpoint.every_steps: must be >= 0 (0 = only at the end), got " +
                std::to_string(ck.every_steps()));
  if (ck.keep() < 1) p.push_back("checkpoint.keep: must be >= 1, got " + std::to_string(ck.keep()));
  if (ck.exit_at_step() < 0)
    p.push_back("checkpoint.exit_at_step: must be >= 0 (0 = run to train.steps), got " +
                std::to_string(ck.exit_at_step()));
  if (ck.exit_at_step() > 0 && ck.dir().empty())
    p.push_back("checkpoint.exit_at_step: stopping early without checkpoint.dir would lose the run; "
                "set checkpoint.dir");
  return p;
}

// ---- derived values ---------------------------------------------------------

int64_t kv_heads(const ModelConfig& m) { return m.has_n_kv_heads() ? m.n_kv_heads() : m.n_heads(); }

int64_t head_dim(const ModelConfig& m) { return m.n_heads() > 0 ? m.d_model() / m.n_heads() : 0; }

bool embed_scale_on(const ModelConfig& m) {
  return m.has_embed_scale() ? m.embed_scale() : m.norm() != RMSNORM;
}

double width_rule_alpha(int64_t width, bool attention) {
  constexpr int n = sizeof(kAlphaTable) / sizeof(kAlphaTable[0]);
  auto value = [&](int i) { return attention ? kAlphaTable[i].attention : kAlphaTable[i].other; };
  if (width <= kAlphaTable[0].width) return value(0);
  if (width >= kAlphaTable[n - 1].width) return value(n - 1);
  for (int i = 0; i + 1 < n; ++i) {
    const int64_t w0 = kAlphaTable[i].width, w1 = kAlphaTable[i + 1].width;
    if (width == w0) return value(i);
    if (width < w1) {
      const double t = (std::log2(static_cast<double>(width)) - std::log2(static_cast<double>(w0))) /
                       (std::log2(static_cast<double>(w1)) - std::log2(static_cast<double>(w0)));
      return value(i) + t * (value(i + 1) - value(i));
    }
  }
  return value(n - 1);  // unreachable
}

AlphaInitValues resolve_alpha(const ModelConfig& m) {
  const AlphaInit& a = m.alpha_init();
  return AlphaInitValues{
      a.has_attention() ? a.attention() : width_rule_alpha(m.d_model(), true),
      a.has_ffn() ? a.ffn() : width_rule_alpha(m.d_model(), false),
      a.has_final() ? a.final() : width_rule_alpha(m.d_model(), false),
  };
}

int64_t warmup_steps(const TrainConfig& t) {
  if (t.warmup_steps() >= 0) return t.warmup_steps();
  return std::min<int64_t>(2000, t.steps() / 20);
}

RunConfig resolved(const RunConfig& cfg) {
  RunConfig out = cfg;
  ModelConfig& m = *out.mutable_model();
  m.set_n_kv_heads(kv_heads(cfg.model()));
  m.set_embed_scale(embed_scale_on(cfg.model()));
  const AlphaInitValues a = resolve_alpha(cfg.model());
  m.mutable_alpha_init()->set_attention(a.attention);
  m.mutable_alpha_init()->set_ffn(a.ffn);
  m.mutable_alpha_init()->set_final(a.final);
  out.mutable_train()->set_warmup_steps(warmup_steps(cfg.train()));
  fill_defaults(out);
  return out;
}

std::string to_text(const RunConfig& cfg) {
  pb::TextFormat::Printer printer;
  printer.SetUseUtf8StringEscaping(true);
  std::string out;
  printer.PrintToString(cfg, &out);
  return out;
}

}  // namespace dyt::config
