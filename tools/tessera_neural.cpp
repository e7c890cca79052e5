// tessera-neural: the `tessera rqkmeans-plus|rqvae train|generate` commands in a binary of their own, the
// only one linked with libtorch (see neural_commands.h). `tessera` exec's it with its own arguments; run
// directly, it takes the same command lines. Signals and errors are handled as in tessera.cpp.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <malloc.h>
#include <unistd.h>

#include "cli_common.h"
#include "neural_commands.h"
#include "tessera/core/error.h"
#include "tessera/core/interrupt.h"

int main(int argc, char** argv) {
  // As tessera.cpp: OpenMP workers wait without spinning (set before libgomp loads, so start again once).
  if (!std::getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0) execv("/proc/self/exe", argv);
  // libtorch allocates every intermediate tensor afresh (a training batch of 2048 rows frees and allocates
  // some hundred MB per step). With glibc's defaults the big blocks are mmap'ed or the heap top is trimmed
  // after each step, so every batch pays page faults and zeroing of fresh pages (measured: about a third of
  // the process's sys time, several percent of an epoch). Keep blocks up to 32 MB on the heap and never trim
  // below 1 GB of free heap top: this process runs one command and exits.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app{"tessera-neural: RQ-VAE and RQ-KMeans+ semantic IDs (the libtorch part of tessera)"};
  app.name("tessera");
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "errors also name where in the source they were detected (or TESSERA_VERBOSE=1)");
  tessera::cli::NeuralCommands neural(app);
  CLI11_PARSE(app, argc, argv);
  tessera::cli::install_signal_handlers();
  try {
    neural.run();
  } catch (const tessera::Interrupted&) {
    const int sig = tessera::cli::received_signal();
    std::fprintf(stderr, "tessera: stopped by %s; no output was written\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    return 128 + sig;
  } catch (const tessera::Error& e) {
    std::fprintf(stderr, "tessera: error: %s", e.what());
    if (tessera::cli::verbose_errors(verbose) && !e.location().empty())
      std::fprintf(stderr, " [%s]", e.location().c_str());
    std::fprintf(stderr, "\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera: unexpected error: %s\n", e.what());
    return 3;
  }
  return 0;
}
