#include "trainer/stop_request.h"

#include <csignal>

namespace dyt::trainer {
namespace {

volatile std::sig_atomic_t g_signal = 0;
constexpr int kSignals[] = {SIGTERM, SIGINT, SIGUSR1};
struct sigaction g_previous[3];

extern "C" void on_stop_signal(int sig) { g_signal = sig; }

}  // namespace

StopRequest::StopRequest() {
  g_signal = 0;
  struct sigaction sa = {};
  sa.sa_handler = on_stop_signal;
  // SA_RESETHAND: the second signal is not polite any more (default action).
  // SA_RESTART: writes in progress (metrics, checkpoints) are not cut short.
  sa.sa_flags = SA_RESETHAND | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &sa, &g_previous[i]);
}

StopRequest::~StopRequest() {
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
}

int StopRequest::signal() const { return g_signal; }

const char* StopRequest::name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
  }
}

}  // namespace dyt::trainer
