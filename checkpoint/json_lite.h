// json_lite: a small, strict JSON reader/writer for file headers (safetensors).
//
// Supports what headers need: objects (key order kept, duplicate keys
// rejected), arrays, strings with every JSON escape (\uXXXX with surrogate
// pairs, decoded to UTF-8), integers (int64; fractions and exponents are
// rejected unless the caller asks for reals: a Hugging Face config.json),
// true, false and null. Nesting is limited so hostile input cannot
// exhaust the stack. Errors are JsonError with the byte offset of the problem.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dyt::checkpoint::json {

struct JsonError : std::runtime_error {
  JsonError(const std::string& what, size_t offset)
      : std::runtime_error(what + " at byte " + std::to_string(offset)), offset(offset) {}
  size_t offset;
};

class Value {
 public:
  enum class Kind { kNull, kBool, kInt, kReal, kString, kArray, kObject };
  using Array = std::vector<Value>;
  using Object = std::vector<std::pair<std::string, Value>>;  // in file order

  Value() = default;
  static Value null() { return Value(); }
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value real(double d);
  static Value string(std::string s);
  static Value array(Array a);
  static Value object(Object o);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kReal; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }

  // Accessors throw std::logic_error when the kind is wrong; check kind first.
  bool as_bool() const;
  int64_t as_int() const;
  double as_number() const;  // an integer or a real
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;
  // Member of an object, or nullptr when absent (or when this is not an object).
  const Value* find(std::string_view key) const;

 private:
  Kind kind_ = Kind::kNull;
  bool b_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  Array a_;
  Object o_;
};

const char* kind_name(Value::Kind k);

// Parses one JSON value; only whitespace may follow it. Numbers with a
// fraction or an exponent are rejected, or with kRealsToo read as kReal.
enum class Numbers { kIntegersOnly, kRealsToo };
Value parse(std::string_view text, Numbers numbers = Numbers::kIntegersOnly);

// Appends `s` as a quoted JSON string (", \ and control characters escaped;
// other bytes, including UTF-8, copied as they are).
void append_quoted(std::string& out, std::string_view s);

}  // namespace dyt::checkpoint::json
