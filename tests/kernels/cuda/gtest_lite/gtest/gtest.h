// gtest_lite: the few GoogleTest macros the CUDA kernel tests use, for the
// standalone build on GPU machines that have no GoogleTest (and no network to
// fetch it). The tests are written against GoogleTest and compile unchanged
// against either; the main build always uses the real one. Covered: TEST,
// GTEST_SKIP, EXPECT_/ASSERT_ TRUE FALSE EQ NE LT LE GT GE, EXPECT_THROW,
// EXPECT_NO_THROW, ADD_FAILURE, FAIL, each streaming a message with <<;
// InitGoogleTest (with --gtest_filter=POSITIVE[:...][-NEGATIVE[:...]] and
// '*' and '?' wildcards, as GoogleTest) and RUN_ALL_TESTS, which ends with
// the line "N passed, N failed, N skipped".
#pragma once

#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace testing {

class Test {
 public:
  virtual ~Test() = default;
  virtual void TestBody() = 0;
};

namespace lite {

struct Entry {
  std::string suite, name;
  std::function<Test*()> make;
};
inline std::vector<Entry>& registry() {
  static std::vector<Entry> r;
  return r;
}
inline std::vector<std::string>& filters() {  // positive patterns (none: all)
  static std::vector<std::string> f;
  return f;
}
inline std::vector<std::string>& negative_filters() {
  static std::vector<std::string> f;
  return f;
}
struct State {
  bool failed = false, skipped = false;
};
inline State& state() {
  static State s;
  return s;
}
inline bool register_test(const char* suite, const char* name, std::function<Test*()> make) {
  registry().push_back({suite, name, std::move(make)});
  return true;
}

struct Message {
  std::ostringstream os;
  template <class T>
  Message& operator<<(const T& v) {
    os << v;
    return *this;
  }
};

// Records a failure (non-fatal or, through `return`, fatal) with the message.
struct Reporter {
  const char* file;
  int line;
  std::string text;
  void operator=(const Message& m) const {
    std::cout << file << ":" << line << ": Failure\n" << text;
    const std::string extra = m.os.str();
    if (!extra.empty()) std::cout << "\n" << extra;
    std::cout << std::endl;
    state().failed = true;
  }
};
struct Skipper {
  const char* file;
  int line;
  void operator=(const Message& m) const {
    std::cout << file << ":" << line << ": Skipped\n" << m.os.str() << std::endl;
    state().skipped = true;
  }
};

template <class T, class = void>
struct Printable : std::false_type {};
template <class T>
struct Printable<T, std::void_t<decltype(std::declval<std::ostream&>() << std::declval<const T&>())>>
    : std::true_type {};
template <class T>
std::string show(const T& v) {
  if constexpr (Printable<T>::value) {
    std::ostringstream os;
    os << v;
    return os.str();
  } else {
    return "<" + std::to_string(sizeof(T)) + "-byte object>";
  }
}

struct Result {
  bool ok;
  std::string text;
  explicit operator bool() const { return ok; }
};
template <class A, class B, class Op>
Result compare(const A& a, const B& b, const char* ea, const char* eb, const char* op, Op&& f) {
  if (f(a, b)) return {true, {}};
  return {false, std::string("Expected: (") + ea + ") " + op + " (" + eb + "), actual: " +
                     show(a) + " vs " + show(b)};
}

template <class E, class F>
bool throws(F&& f) {
  try {
    f();
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}
template <class F>
bool no_throw(F&& f) {
  try {
    f();
  } catch (...) {
    return false;
  }
  return true;
}

inline bool glob(const char* p, const char* s) {
  if (*p == '\0') return *s == '\0';
  if (*p == '*') return glob(p + 1, s) || (*s != '\0' && glob(p, s + 1));
  if (*s == '\0') return false;
  return (*p == '?' || *p == *s) && glob(p + 1, s + 1);
}
inline bool selected(const std::string& full) {
  for (const std::string& f : negative_filters())
    if (glob(f.c_str(), full.c_str())) return false;
  if (filters().empty()) return true;
  for (const std::string& f : filters())
    if (glob(f.c_str(), full.c_str())) return true;
  return false;
}

inline int run_all() {
  int passed = 0, failed = 0, skipped = 0;
  std::vector<std::string> failures;
  for (const Entry& e : registry()) {
    const std::string full = e.suite + "." + e.name;
    if (!selected(full)) continue;
    std::cout << "[ RUN      ] " << full << std::endl;
    state() = State{};
    try {
      std::unique_ptr<Test> t(e.make());
      t->TestBody();
    } catch (const std::exception& ex) {
      std::cout << "unexpected exception: " << ex.what() << std::endl;
      state().failed = true;
    } catch (...) {
      std::cout << "unexpected exception of unknown type" << std::endl;
      state().failed = true;
    }
    if (state().failed) {
      ++failed;
      failures.push_back(full);
      std::cout << "[  FAILED  ] " << full << std::endl;
    } else if (state().skipped) {
      ++skipped;
      std::cout << "[  SKIPPED ] " << full << std::endl;
    } else {
      ++passed;
      std::cout << "[       OK ] " << full << std::endl;
    }
  }
  for (const std::string& f : failures) std::cout << "[  FAILED  ] " << f << std::endl;
  std::cout << passed << " passed, " << failed << " failed, " << skipped << " skipped"
            << std::endl;
  return failed ? 1 : 0;
}

}  // namespace lite

inline void InitGoogleTest(int* argc, char** argv) {
  const char* key = "--gtest_filter=";
  for (int i = 1; i < *argc; ++i) {
    if (std::strncmp(argv[i], key, std::strlen(key)) != 0) continue;
    const std::string all = argv[i] + std::strlen(key);
    const size_t dash = all.find('-');
    auto split = [](const std::string& pats, std::vector<std::string>& into) {
      size_t start = 0;
      while (start <= pats.size()) {
        const size_t end = pats.find(':', start);
        const std::string p = pats.substr(start, end == std::string::npos ? end : end - start);
        if (!p.empty()) into.push_back(p);
        if (end == std::string::npos) break;
        start = end + 1;
      }
    };
    split(all.substr(0, dash), lite::filters());
    if (dash != std::string::npos) split(all.substr(dash + 1), lite::negative_filters());
  }
}

}  // namespace testing

#define RUN_ALL_TESTS() ::testing::lite::run_all()

#define TEST(suite, name)                                                                  \
  class suite##_##name##_Test : public ::testing::Test {                                   \
   public:                                                                                 \
    void TestBody() override;                                                              \
  };                                                                                       \
  [[maybe_unused]] static const bool suite##_##name##_registered_ =                        \
      ::testing::lite::register_test(#suite, #name,                                        \
                                     []() -> ::testing::Test* { return new suite##_##name##_Test; }); \
  void suite##_##name##_Test::TestBody()

#define GTEST_LITE_BLOCKER_ \
  switch (0)                \
  case 0:                   \
  default:

#define GTEST_LITE_REPORT_(text) ::testing::lite::Reporter{__FILE__, __LINE__, (text)} = ::testing::lite::Message()

#define GTEST_SKIP() return ::testing::lite::Skipper{__FILE__, __LINE__} = ::testing::lite::Message()
#define ADD_FAILURE() GTEST_LITE_REPORT_("Failed")
#define FAIL() return GTEST_LITE_REPORT_("Failed")

#define GTEST_LITE_BOOL_(cond, want, ret)                                            \
  GTEST_LITE_BLOCKER_                                                                \
  if (static_cast<bool>(cond) == (want))                                             \
    ;                                                                                \
  else                                                                               \
    ret GTEST_LITE_REPORT_(std::string("Expected ") + (want ? "true" : "false") + ": " #cond)

#define GTEST_LITE_CMP_(a, b, op, ret)                                                        \
  GTEST_LITE_BLOCKER_                                                                         \
  if (const ::testing::lite::Result gtest_lite_r_ = ::testing::lite::compare(                 \
          (a), (b), #a, #b, #op, [](const auto& x_, const auto& y_) { return x_ op y_; }))    \
    ;                                                                                         \
  else                                                                                        \
    ret GTEST_LITE_REPORT_(gtest_lite_r_.text)

#define EXPECT_TRUE(c) GTEST_LITE_BOOL_(c, true, )
#define EXPECT_FALSE(c) GTEST_LITE_BOOL_(c, false, )
#define ASSERT_TRUE(c) GTEST_LITE_BOOL_(c, true, return)
#define ASSERT_FALSE(c) GTEST_LITE_BOOL_(c, false, return)
#define EXPECT_EQ(a, b) GTEST_LITE_CMP_(a, b, ==, )
#define EXPECT_NE(a, b) GTEST_LITE_CMP_(a, b, !=, )
#define EXPECT_LT(a, b) GTEST_LITE_CMP_(a, b, <, )
#define EXPECT_LE(a, b) GTEST_LITE_CMP_(a, b, <=, )
#define EXPECT_GT(a, b) GTEST_LITE_CMP_(a, b, >, )
#define EXPECT_GE(a, b) GTEST_LITE_CMP_(a, b, >=, )
#define ASSERT_EQ(a, b) GTEST_LITE_CMP_(a, b, ==, return)
#define ASSERT_NE(a, b) GTEST_LITE_CMP_(a, b, !=, return)
#define ASSERT_LT(a, b) GTEST_LITE_CMP_(a, b, <, return)
#define ASSERT_LE(a, b) GTEST_LITE_CMP_(a, b, <=, return)
#define ASSERT_GT(a, b) GTEST_LITE_CMP_(a, b, >, return)
#define ASSERT_GE(a, b) GTEST_LITE_CMP_(a, b, >=, return)

#define EXPECT_THROW(stmt, exc)                                                        \
  GTEST_LITE_BLOCKER_                                                                  \
  if (::testing::lite::throws<exc>([&]() { stmt; }))                                   \
    ;                                                                                  \
  else                                                                                 \
    GTEST_LITE_REPORT_("Expected: " #stmt " throws an exception of type " #exc)
#define EXPECT_NO_THROW(stmt)                                                          \
  GTEST_LITE_BLOCKER_                                                                  \
  if (::testing::lite::no_throw([&]() { stmt; }))                                      \
    ;                                                                                  \
  else                                                                                 \
    GTEST_LITE_REPORT_("Expected: " #stmt " throws nothing")
