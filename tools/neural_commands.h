// `tessera rqkmeans-plus train|generate` and `tessera rqvae train|generate`: the neural component (RQ-VAE,
// RQ-KMeans+; docs/neural.md) from the command line. main() owns signals and error reporting; these only
// parse, validate, call the library and print. No torch header here: the library is reached through
// tessera/neural/model.h.
//
// Linking libtorch costs every process about 1 s of start-up (some 280 shared libraries), so `tessera` itself
// does not: it parses these commands (same options, same checks of the command line) and runs them by
// exec'ing `tessera-neural` from its own directory, the binary built from this file with TESSERA_WITH_NEURAL.
// Without that binary (no libtorch) the commands fail with "built without libtorch: ...".
#pragma once
#include <CLI/CLI.hpp>
#include <memory>

namespace tessera::cli {

class NeuralCommands {
 public:
  /// Adds the `rqkmeans-plus` and `rqvae` subcommands, each with `train` and `generate`, to app.
  /// argv: the process's arguments, handed on unchanged to `tessera-neural` (nullptr: no hand-over).
  explicit NeuralCommands(CLI::App& app, char** argv = nullptr);
  ~NeuralCommands();
  /// Run the parsed command; false when none of these was parsed. Throws tessera::Error on bad input.
  bool run();
  /// The parsed command was given -q (no progress output).
  bool quiet() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::cli
