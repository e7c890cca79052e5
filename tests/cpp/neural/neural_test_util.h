// Helpers of the neural tests: tensors from matrices, and the PyTorch reference run in a subprocess.
#pragma once
#include <stdio.h>
#include <sys/wait.h>

#include <array>
#include <string>

#include "../io_test_util.h"
#include "tessera/core/matrix.h"

namespace tessera::neural::testing {

/// The interpreter that has PyTorch for the reference tests: TESSERA_TORCH_PYTHON, else Debian's
/// /usr/bin/python3 with python3-torch (the same torch 1.13 as libtorch-dev; the project's .venv has none).
inline std::string torch_python() {
  const char* env = std::getenv("TESSERA_TORCH_PYTHON");
  return env && *env ? env : "/usr/bin/python3";
}

/// Run `script` with torch_python(); returns (exit status, stdout).
inline std::pair<int, std::string> run_python(const std::string& script) {
  const std::string cmd = torch_python() + " - 2>&1 <<'TESSERA_PY_EOF'\n" + script + "\nTESSERA_PY_EOF\n";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return {-1, "popen failed"};
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(f);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

/// Why the PyTorch reference cannot run ("" when it can).
inline std::string missing_torch_python() {
  static const std::string why = [] {
    const auto [status, out] = run_python("import torch");
    return status == 0 ? std::string()
                       : torch_python() + " cannot import torch (apt-get install python3-torch, or set "
                                          "TESSERA_TORCH_PYTHON): " + out;
  }();
  return why;
}

}  // namespace tessera::neural::testing
