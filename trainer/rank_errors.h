// Failing together: when one rank of a collective step (a checkpoint's save
// or load) fails, every rank must stop with its message, rather than the
// others waiting forever in the next collective.
#pragma once

#include <exception>
#include <string>

#include "common/error_of.h"
#include "parallel/communicator.h"

namespace dyt::trainer {

// Collective over `comm`: every rank passes its error ("" when it
// succeeded). Returns "" when every rank succeeded; otherwise, on every
// rank, "rank <r>: <its error>" for the highest failing rank r (the message
// cut to 4000 bytes; without "rank <r>: " in a job of one). One allreduce_max of a flag when all is well; the
// message travels only on failure.
std::string first_error(parallel::Communicator& comm, const std::string& error);

// error_of (common/error_of.h) turns a rank's part of a collective step
// into the text to pass to first_error.

}  // namespace dyt::trainer
