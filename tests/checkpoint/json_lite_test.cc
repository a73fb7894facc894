#include "checkpoint/json_lite.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace dyt::checkpoint::json {
namespace {

TEST(JsonLite, ParsesNestedStructure) {
  Value v = parse(R"( {"a": [1, -2, 0], "b": {"c": "x", "d": true, "e": null, "f": false}} )");
  ASSERT_TRUE(v.is_object());
  ASSERT_EQ(v.as_object().size(), 2u);
  EXPECT_EQ(v.as_object()[0].first, "a");  // file order kept
  const Value* a = v.find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->as_array().size(), 3u);
  EXPECT_EQ(a->as_array()[1].as_int(), -2);
  const Value* b = v.find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->find("c")->as_string(), "x");
  EXPECT_TRUE(b->find("d")->as_bool());
  EXPECT_TRUE(b->find("e")->is_null());
  EXPECT_FALSE(b->find("f")->as_bool());
  EXPECT_EQ(v.find("zz"), nullptr);
  EXPECT_TRUE(parse("{}").as_object().empty());
  EXPECT_TRUE(parse("[]").as_array().empty());
}

TEST(JsonLite, StringEscapes) {
  Value v = parse(R"("q\" b\\ s\/ \b\f\n\r\t \u0041\u00e9\u20ac\ud83d\ude00")");
  EXPECT_EQ(v.as_string(), "q\" b\\ s/ \b\f\n\r\t A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
}

TEST(JsonLite, QuoteRoundTrips) {
  std::string s = "a\"b\\c\nd\x01\x1f \xC3\xA9";
  std::string q;
  append_quoted(q, s);
  EXPECT_EQ(q, "\"a\\\"b\\\\c\\nd\\u0001\\u001f \xC3\xA9\"");
  EXPECT_EQ(parse(q).as_string(), s);
}

TEST(JsonLite, IntegerLimits) {
  EXPECT_EQ(parse("9223372036854775807").as_int(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(parse("-9223372036854775808").as_int(), std::numeric_limits<int64_t>::min());
  EXPECT_THROW(parse("9223372036854775808"), JsonError);
  EXPECT_THROW(parse("-9223372036854775809"), JsonError);
  EXPECT_THROW(parse("99999999999999999999999"), JsonError);
}

TEST(JsonLite, RejectsMalformedInput) {
  for (const char* bad : {"", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[1 2]",
                          "{a:1}", "\"unterminated", "\"bad \\x escape\"", "\"\\u12\"",
                          "\"\\ud800\"", "\"\\udc00\"", "\"tab\there\"", "1.5", "1e3", "01",
                          "-", "tru", "nul", "{\"a\":1} x", "{\"a\":1,\"a\":2}"}) {
    EXPECT_THROW(parse(bad), JsonError) << "input: " << bad;
  }
}

// A Hugging Face config.json has reals (rms_norm_eps 1e-05); headers never do.
TEST(JsonLite, RealsOnlyWhenAsked) {
  const Numbers reals = Numbers::kRealsToo;
  EXPECT_EQ(parse("1e-05", reals).as_number(), 1e-05);
  EXPECT_EQ(parse("-0.25", reals).as_number(), -0.25);
  EXPECT_EQ(parse("10000.0", reals).kind(), Value::Kind::kReal);
  EXPECT_EQ(parse("2.5E+3", reals).as_number(), 2500.0);
  EXPECT_EQ(parse("12", reals).as_int(), 12);  // integers stay integers
  EXPECT_EQ(parse("12", reals).as_number(), 12.0);
  const Value v = parse("{\"rms_norm_eps\": 1e-05, \"heads\": 4}", reals);
  EXPECT_EQ(v.find("rms_norm_eps")->as_number(), 1e-05);
  EXPECT_EQ(v.find("heads")->as_int(), 4);
  for (const char* bad : {"1.", ".5", "1e", "1e+", "01.5", "-.5", "1.5.2", "1e400", "--1", "1.e3"})
    EXPECT_THROW(parse(bad, reals), JsonError) << "input: " << bad;
  EXPECT_THROW(parse("1.5"), JsonError);  // the default stays integers only
  EXPECT_THROW(parse("1.5", reals).as_int(), std::logic_error);
}

TEST(JsonLite, ErrorsCarryTheOffset) {
  try {
    parse("{\"a\": 1, \"a\": 2}");
    FAIL() << "expected JsonError";
  } catch (const JsonError& e) {
    EXPECT_EQ(e.offset, 9u);
    EXPECT_NE(std::string(e.what()).find("duplicate key \"a\""), std::string::npos);
  }
}

TEST(JsonLite, LimitsNestingDepth) {
  std::string deep(200, '[');
  deep += std::string(200, ']');
  EXPECT_THROW(parse(deep), JsonError);
  std::string ok(50, '[');
  ok += std::string(50, ']');
  EXPECT_NO_THROW(parse(ok));
}

TEST(JsonLite, WrongKindAccessIsALogicError) {
  EXPECT_THROW(parse("1").as_string(), std::logic_error);
  EXPECT_THROW(parse("\"x\"").as_int(), std::logic_error);
}

}  // namespace
}  // namespace dyt::checkpoint::json
