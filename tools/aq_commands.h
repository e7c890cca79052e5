// `tessera aq train|encode|search|eval`: additive quantizers (LSQ, RQ) and the flat index from the command
// line. main() owns signals and error reporting; these only parse, validate, call the library and print.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>

namespace tessera::cli {

class AqCommands {
 public:
  /// Adds the `aq` subcommand and its four commands to app.
  explicit AqCommands(CLI::App& app);
  ~AqCommands();
  /// Run the parsed `aq` command; false when none was parsed. Throws tessera::Error on bad input.
  bool run();
  /// Whether the parsed command was asked to be quiet (no progress bar).
  bool quiet() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::cli
