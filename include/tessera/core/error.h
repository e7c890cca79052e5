// Errors: one exception family. The library never prints and never exits; it throws one of these,
// with a message for users (what was wrong, what was expected) and, apart, where it was detected
// (for debugging: front ends show it on request, not in every message).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace tessera {

/// Base of every error tessera throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, std::string location = {})
      : std::runtime_error(message), location_(std::move(location)) {}
  /// Where the error was detected, "src/cluster/kmeans.cpp:120" (empty when unknown).
  const std::string& location() const noexcept { return location_; }

 private:
  std::string location_;
};

/// A caller passed something unusable: wrong shape, NaN/Inf, K > N, infeasible bounds, ...
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// A file is truncated, corrupted, foreign or of an unsupported layout.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// The operating system refused: cannot open, read, write or rename.
class IOError : public Error {
 public:
  using Error::Error;
};

namespace detail {
[[noreturn]] void throw_error(int kind, const std::string& msg, const char* file, int line);
}  // namespace detail

}  // namespace tessera

#define TESSERA_DETAIL_THROW(kind, msg_expr)                                          \
  do {                                                                                \
    std::ostringstream tessera_msg_;                                                  \
    tessera_msg_ << msg_expr;                                                         \
    ::tessera::detail::throw_error(kind, tessera_msg_.str(), __FILE__, __LINE__);     \
  } while (0)

/// Throw InvalidArgument unless `cond`; the message is a stream expression: "k = " << k.
#define TESSERA_CHECK_ARG(cond, msg_expr) \
  do { if (!(cond)) TESSERA_DETAIL_THROW(0, msg_expr); } while (0)
#define TESSERA_THROW_ARG(msg_expr) TESSERA_DETAIL_THROW(0, msg_expr)
#define TESSERA_THROW_FORMAT(msg_expr) TESSERA_DETAIL_THROW(1, msg_expr)
#define TESSERA_CHECK_FORMAT(cond, msg_expr) \
  do { if (!(cond)) TESSERA_DETAIL_THROW(1, msg_expr); } while (0)
#define TESSERA_THROW_IO(msg_expr) TESSERA_DETAIL_THROW(2, msg_expr)
