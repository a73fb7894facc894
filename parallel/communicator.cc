#include "parallel/communicator.h"

#include <cstdlib>

namespace dyt::parallel {

void LocalCommunicator::abort(int code) { std::exit(code); }

}  // namespace dyt::parallel
