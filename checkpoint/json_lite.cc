#include "checkpoint/json_lite.h"

#include <cmath>
#include <cstdlib>
#include <limits>

namespace dyt::checkpoint::json {

Value Value::boolean(bool b) { Value v; v.kind_ = Kind::kBool; v.b_ = b; return v; }
Value Value::integer(int64_t i) { Value v; v.kind_ = Kind::kInt; v.i_ = i; return v; }
Value Value::real(double d) { Value v; v.kind_ = Kind::kReal; v.d_ = d; return v; }
Value Value::string(std::string s) { Value v; v.kind_ = Kind::kString; v.s_ = std::move(s); return v; }
Value Value::array(Array a) { Value v; v.kind_ = Kind::kArray; v.a_ = std::move(a); return v; }
Value Value::object(Object o) { Value v; v.kind_ = Kind::kObject; v.o_ = std::move(o); return v; }

static void expect_kind(Value::Kind have, Value::Kind want) {
  if (have != want) {
    throw std::logic_error(std::string("json::Value is ") + kind_name(have) + ", not " +
                           kind_name(want));
  }
}
bool Value::as_bool() const { expect_kind(kind_, Kind::kBool); return b_; }
int64_t Value::as_int() const { expect_kind(kind_, Kind::kInt); return i_; }
double Value::as_number() const {
  if (kind_ == Kind::kInt) return static_cast<double>(i_);
  expect_kind(kind_, Kind::kReal);
  return d_;
}
const std::string& Value::as_string() const { expect_kind(kind_, Kind::kString); return s_; }
const Value::Array& Value::as_array() const { expect_kind(kind_, Kind::kArray); return a_; }
const Value::Object& Value::as_object() const { expect_kind(kind_, Kind::kObject); return o_; }

const Value* Value::find(std::string_view key) const {
  if (kind_ != Kind::kObject) return nullptr;
  for (const auto& [k, v] : o_) {
    if (k == key) return &v;
  }
  return nullptr;
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::kNull: return "null";
    case Value::Kind::kBool: return "a boolean";
    case Value::Kind::kInt: return "an integer";
    case Value::Kind::kReal: return "a real number";
    case Value::Kind::kString: return "a string";
    case Value::Kind::kArray: return "an array";
    case Value::Kind::kObject: return "an object";
  }
  return "?";
}

namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
  Parser(std::string_view t, Numbers numbers) : t_(t), numbers_(numbers) {}

  Value parse_document() {
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != t_.size()) fail("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw JsonError(what, pos_); }

  void skip_ws() {
    while (pos_ < t_.size() &&
           (t_[pos_] == ' ' || t_[pos_] == '\t' || t_[pos_] == '\n' || t_[pos_] == '\r')) {
      ++pos_;
    }
  }

  char peek() {
    if (pos_ >= t_.size()) fail("unexpected end of JSON");
    return t_[pos_];
  }

  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "', found '" + t_[pos_] + "'");
    ++pos_;
  }

  void expect_word(std::string_view w) {
    if (t_.substr(pos_, w.size()) != w) fail("invalid literal");
    pos_ += w.size();
  }

  Value parse_value(int depth) {
    if (depth > kMaxDepth) fail("JSON nested too deeply");
    skip_ws();
    char c = peek();
    switch (c) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"': return Value::string(parse_string());
      case 't': expect_word("true"); return Value::boolean(true);
      case 'f': expect_word("false"); return Value::boolean(false);
      case 'n': expect_word("null"); return Value::null();
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
        fail(std::string("unexpected character '") + c + "'");
    }
  }

  Value parse_object(int depth) {
    expect('{');
    Value::Object obj;
    skip_ws();
    if (peek() == '}') { ++pos_; return Value::object(std::move(obj)); }
    while (true) {
      skip_ws();
      if (peek() != '"') fail("expected a string key");
      size_t key_pos = pos_;
      std::string key = parse_string();
      for (const auto& kv : obj) {
        if (kv.first == key) throw JsonError("duplicate key \"" + key + "\"", key_pos);
      }
      skip_ws();
      expect(':');
      Value v = parse_value(depth + 1);
      obj.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (peek() == ',') { ++pos_; continue; }
      expect('}');
      return Value::object(std::move(obj));
    }
  }

  Value parse_array(int depth) {
    expect('[');
    Value::Array arr;
    skip_ws();
    if (peek() == ']') { ++pos_; return Value::array(std::move(arr)); }
    while (true) {
      arr.push_back(parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') { ++pos_; continue; }
      expect(']');
      return Value::array(std::move(arr));
    }
  }

  Value parse_number() {
    const size_t start = pos_;
    if (numbers_ == Numbers::kRealsToo) {
      // JSON's grammar: -?int frac? exp?; a real when frac or exp is there.
      size_t p = pos_;
      if (t_[p] == '-') ++p;
      while (p < t_.size() && t_[p] >= '0' && t_[p] <= '9') ++p;
      if (p < t_.size() && (t_[p] == '.' || t_[p] == 'e' || t_[p] == 'E')) {
        parse_int_part();  // sign, digits, no leading zeros
        if (peek_is('.')) {
          ++pos_;
          digits("a digit after '.'");
        }
        if (peek_is('e') || peek_is('E')) {
          ++pos_;
          if (peek_is('+') || peek_is('-')) ++pos_;
          digits("a digit in the exponent");
        }
        const std::string text(t_.substr(start, pos_ - start));
        char* end = nullptr;
        const double d = std::strtod(text.c_str(), &end);  // C locale: the programs never set another
        if (end != text.c_str() + text.size() || !std::isfinite(d)) {
          pos_ = start;
          fail("number out of the double range");
        }
        return Value::real(d);
      }
    }
    return Value::integer(parse_int());
  }

  bool peek_is(char c) const { return pos_ < t_.size() && t_[pos_] == c; }

  void digits(const char* what) {
    if (pos_ >= t_.size() || t_[pos_] < '0' || t_[pos_] > '9') fail(std::string("expected ") + what);
    while (pos_ < t_.size() && t_[pos_] >= '0' && t_[pos_] <= '9') ++pos_;
  }

  void parse_int_part() {
    if (t_[pos_] == '-') ++pos_;
    if (pos_ >= t_.size() || t_[pos_] < '0' || t_[pos_] > '9') fail("invalid number");
    if (t_[pos_] == '0' && pos_ + 1 < t_.size() && t_[pos_ + 1] >= '0' && t_[pos_ + 1] <= '9')
      fail("numbers may not have leading zeros");
    digits("a digit");
  }

  int64_t parse_int() {
    size_t start = pos_;
    bool neg = false;
    if (t_[pos_] == '-') { neg = true; ++pos_; }
    if (pos_ >= t_.size() || t_[pos_] < '0' || t_[pos_] > '9') fail("invalid number");
    if (t_[pos_] == '0' && pos_ + 1 < t_.size() && t_[pos_ + 1] >= '0' && t_[pos_ + 1] <= '9') {
      fail("numbers may not have leading zeros");
    }
    // Accumulate as a negative value so INT64_MIN is representable.
    int64_t v = 0;
    while (pos_ < t_.size() && t_[pos_] >= '0' && t_[pos_] <= '9') {
      int d = t_[pos_] - '0';
      if (v < (std::numeric_limits<int64_t>::min() + d) / 10) {
        pos_ = start;
        fail("integer out of the 64-bit range");
      }
      v = v * 10 - d;
      ++pos_;
    }
    if (pos_ < t_.size() && (t_[pos_] == '.' || t_[pos_] == 'e' || t_[pos_] == 'E')) {
      pos_ = start;
      fail("only integers are supported, not fractions or exponents");
    }
    if (!neg) {
      if (v == std::numeric_limits<int64_t>::min()) {
        pos_ = start;
        fail("integer out of the 64-bit range");
      }
      v = -v;
    }
    return v;
  }

  unsigned parse_hex4() {
    if (pos_ + 4 > t_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = t_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else { --pos_; fail("invalid hex digit in \\u escape"); }
    }
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    while (true) {
      if (pos_ >= t_.size()) fail("unterminated string");
      char c = t_[pos_];
      if (c == '"') { ++pos_; return out; }
      if (static_cast<unsigned char>(c) < 0x20) fail("unescaped control character in string");
      if (c != '\\') { out += c; ++pos_; continue; }
      ++pos_;
      if (pos_ >= t_.size()) fail("unterminated string");
      char e = t_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (t_.substr(pos_, 2) != "\\u") fail("high surrogate without a low surrogate");
            pos_ += 2;
            uint32_t lo = parse_hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate without a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("lone low surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          fail(std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  std::string_view t_;
  Numbers numbers_;
  size_t pos_ = 0;
};

}  // namespace

Value parse(std::string_view text, Numbers numbers) { return Parser(text, numbers).parse_document(); }

void append_quoted(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  out += '"';
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 0xF];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace dyt::checkpoint::json
