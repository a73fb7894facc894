// libFuzzer target: the JSON reader of safetensors headers
// (checkpoint/json_lite.h, json::parse), in both its modes (integers only,
// and with reals: a Hugging Face config.json). Bad input must throw
// JsonError; accepted input must survive a round trip: written back
// (append_quoted for strings and keys, reals in their shortest exact text)
// and parsed again, it gives the same value; and what the integers-only mode
// accepts, the reals mode accepts as the same value.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "checkpoint/json_lite.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using dyt::checkpoint::json::Value;
namespace json = dyt::checkpoint::json;

void write(const Value& v, std::string& out) {
  switch (v.kind()) {
    case Value::Kind::kNull: out += "null"; break;
    case Value::Kind::kBool: out += v.as_bool() ? "true" : "false"; break;
    case Value::Kind::kInt: out += std::to_string(v.as_int()); break;
    case Value::Kind::kReal: {
      char buf[40];
      std::string r(buf, std::to_chars(buf, buf + sizeof buf, v.as_number()).ptr);
      if (r.find_first_of(".e") == std::string::npos) r += ".0";  // stays a real
      out += r;
      break;
    }
    case Value::Kind::kString: json::append_quoted(out, v.as_string()); break;
    case Value::Kind::kArray: {
      out += '[';
      bool first = true;
      for (const Value& e : v.as_array()) {
        if (!first) out += ',';
        first = false;
        write(e, out);
      }
      out += ']';
      break;
    }
    case Value::Kind::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.as_object()) {
        if (!first) out += ',';
        first = false;
        json::append_quoted(out, k);
        out += ':';
        write(e, out);
      }
      out += '}';
      break;
    }
  }
}

bool same(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kNull: return true;
    case Value::Kind::kBool: return a.as_bool() == b.as_bool();
    case Value::Kind::kInt: return a.as_int() == b.as_int();
    case Value::Kind::kReal: return a.as_number() == b.as_number();
    case Value::Kind::kString: return a.as_string() == b.as_string();
    case Value::Kind::kArray: {
      const auto& x = a.as_array();
      const auto& y = b.as_array();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!same(x[i], y[i])) return false;
      return true;
    }
    case Value::Kind::kObject: {
      const auto& x = a.as_object();
      const auto& y = b.as_object();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (x[i].first != y[i].first || !same(x[i].second, y[i].second)) return false;
      return true;
    }
  }
  return false;
}

void round_trip(std::string_view text, json::Numbers numbers) {
  const Value v = json::parse(text, numbers);
  std::string again;
  write(v, again);
  Value w;
  try {
    w = json::parse(again, numbers);
  } catch (const json::JsonError& e) {
    dyt::fuzz::finding("accepted JSON, written back as '" + again + "', does not parse: " + e.what());
  }
  if (!same(v, w)) dyt::fuzz::finding("JSON round trip changed the value: '" + again + "'");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  dyt::fuzz::expect_only<json::JsonError>("json::parse", [&] { round_trip(text, json::Numbers::kIntegersOnly); });
  dyt::fuzz::expect_only<json::JsonError>("json::parse (reals)", [&] { round_trip(text, json::Numbers::kRealsToo); });
  dyt::fuzz::expect_only<json::JsonError>("json::parse (modes)", [&] {
    const Value v = json::parse(text);  // throws for what the reals mode may accept: fine
    if (!same(v, json::parse(text, json::Numbers::kRealsToo)))
      dyt::fuzz::finding("the reals mode reads an integers-only document differently");
  });
  return 0;
}
