// tessera-neural: the `tessera rqkmeans-plus|rqvae train|generate` commands in a binary of their own, the
// only one linked with libtorch (see neural_commands.h). `tessera` exec's it with its own arguments; run
// directly, it takes the same command lines. Signals and errors are handled as in tessera.cpp.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

#include "neural_commands.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"

namespace {

volatile std::sig_atomic_t g_neural_signal = 0;

extern "C" void on_neural_signal(int sig) { g_neural_signal = sig; }

void install_neural_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_neural_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  tessera::set_interrupt_check([] { return g_neural_signal != 0; });
}

}  // namespace

int main(int argc, char** argv) {
  // As tessera.cpp: OpenMP workers wait without spinning (set before libgomp loads, so start again once).
  if (!std::getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0) execv("/proc/self/exe", argv);
  CLI::App app{"tessera-neural: RQ-VAE and RQ-KMeans+ semantic IDs (the libtorch part of tessera)"};
  app.name("tessera");
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "errors also name where in the source they were detected (or TESSERA_VERBOSE=1)");
  tessera::cli::NeuralCommands neural(app);
  CLI11_PARSE(app, argc, argv);
  install_neural_signal_handlers();
  try {
    neural.run();
  } catch (const tessera::Interrupted&) {
    const int sig = g_neural_signal ? int(g_neural_signal) : SIGINT;
    std::fprintf(stderr, "tessera: stopped by %s; no output was written\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    return 128 + sig;
  } catch (const tessera::Error& e) {
    std::fprintf(stderr, "tessera: error: %s", e.what());
    const char* env = std::getenv("TESSERA_VERBOSE");
    if ((verbose || (env && *env && std::string(env) != "0")) && !e.location().empty())
      std::fprintf(stderr, " [%s]", e.location().c_str());
    std::fprintf(stderr, "\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera: unexpected error: %s\n", e.what());
    return 3;
  }
  return 0;
}
